"""The web UI's tabs, one module each: ``LABELS`` (key -> (English, Chinese)) and ``build(ctx)``, which adds the
tab's components inside the ``gr.Tab`` that :func:`swiftkit.webui.app.build_app` opens.

:class:`FlagForm` is the form the tabs share: one widget per flag of one or more commands, made from
:func:`swiftkit.webui.forms.field_specs` (so a new flag appears without UI code), the chosen basic flags open
and the others under a collapsed "Advanced" accordion, grouped as ``--help`` groups them. Each widget has an
error line under it that :meth:`FlagForm.error_updates` fills from :func:`swiftkit.webui.forms.validate`.
"""

from __future__ import annotations

import json
import shlex
from collections.abc import Callable, Sequence
from typing import Any

import gradio as gr

from swiftkit.webui import forms, i18n
from swiftkit.webui.forms import FieldSpec

COLUMNS = 3  # widgets per row
UNSET = ""  # the choice that leaves an optional flag unset (its default, None)

Widget = Callable[[FieldSpec, str], gr.components.Component]  # (spec, elem_id) -> a component


def _text(value: Any) -> str:
    """A flag value as a command line writes it (true/false, the shortest exact float)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return repr(value) if isinstance(value, float) else str(value)


def widget_value(spec: FieldSpec, value: Any) -> Any:
    """``value`` (a flag value) as ``spec``'s default widget holds it: text for text boxes, a bool for
    checkboxes, the choice's text for dropdowns."""
    if spec.kind == "bool":
        return bool(value)
    if value is None:
        return UNSET
    if spec.kind == "list":
        return shlex.join(_text(v) for v in value)
    if spec.kind == "dict" and isinstance(value, dict):
        return json.dumps(value, ensure_ascii=False)
    return _text(value)


def default_widget(spec: FieldSpec, elem_id: str) -> gr.components.Component:
    """The widget of a flag: a checkbox (true/false), a dropdown (choices; with an empty choice when the
    default is unset) or a text box (numbers, text, space-separated lists, JSON objects)."""
    common = dict(label=spec.name, info=spec.help, elem_id=elem_id)
    if spec.kind == "bool":
        return gr.Checkbox(value=bool(spec.default), **common)
    if spec.kind == "choice":
        choices = [(c, c) for c in spec.choices]
        if spec.default is None:
            choices.insert(0, ("(unset)", UNSET))
        return gr.Dropdown(choices=choices, value=widget_value(spec, spec.default), **common)
    return gr.Textbox(value=widget_value(spec, spec.default), lines=1, max_lines=4, **common)


class FlagForm:
    """Widgets for the flags of ``commands`` (their union; a flag only some of them have is shown while
    one of those is selected, see :meth:`visibility_updates`).

    ``basic`` flags are shown open in that order, the rest under "Advanced"; ``widgets`` replaces the
    default widget of some flags (a model picker, a dataset dropdown). Components are built when the
    form is created, inside the caller's ``gr.Blocks`` context.
    """

    def __init__(self, commands: Sequence[str], host, prefix: str, lang: str, basic: Sequence[str],
                 widgets: dict[str, Widget] | None = None):
        self.commands = tuple(commands)
        self.host = host
        self.prefix = prefix
        self.specs: dict[str, FieldSpec] = {}
        self.flags_of: dict[str, set[str]] = {}
        for command in self.commands:
            specs = forms.field_specs(command, host)
            self.flags_of[command] = {s.name for s in specs}
            for spec in specs:
                self.specs.setdefault(spec.name, spec)
        self.names = list(self.specs)
        self.inputs: dict[str, gr.components.Component] = {}
        self.errors: dict[str, gr.Markdown] = {}
        self.sections: list[tuple[gr.Column, set[str]]] = []  # (container, its flags)
        widgets = widgets or {}
        basic = [name for name in basic if name in self.specs]
        rest = [name for name in self.names if name not in basic]
        self._section(basic, widgets)
        with gr.Accordion(i18n.t("common.advanced", lang), open=False, elem_id=f"{prefix}-advanced") as advanced:
            groups: dict[str, list[str]] = {}
            for name in rest:
                groups.setdefault(self.specs[name].group, []).append(name)
            for group, names in groups.items():
                self._section(names, widgets, title=group)
        self.advanced = advanced
        self.advanced_names = set(rest)

    def _section(self, names: list[str], widgets: dict[str, Widget], title: str = "") -> None:
        with gr.Column(visible=True) as box:
            if title:
                gr.Markdown(f"**{title}**")
            for start in range(0, len(names), COLUMNS):
                with gr.Row(equal_height=False):
                    for name in names[start:start + COLUMNS]:
                        with gr.Column(min_width=240):
                            self._field(name, widgets.get(name, default_widget))
        self.sections.append((box, set(names)))

    def _field(self, name: str, make: Widget) -> None:
        spec = self.specs[name]
        self.inputs[name] = make(spec, f"{self.prefix}-{name}")
        self.errors[name] = gr.Markdown(visible=False, elem_id=f"{self.prefix}-{name}-error",
                                        elem_classes=["swk-field-error"])

    # -- values ------------------------------------------------------------------------------------------

    @property
    def components(self) -> list[gr.components.Component]:
        """The input widgets, in the order :meth:`values` takes their values."""
        return [self.inputs[name] for name in self.names]

    def values(self, command: str, widget_values: Sequence[Any]) -> dict[str, Any]:
        """``command``'s flags from the widgets' values (as they are: :func:`forms.clean_values` types them)."""
        flags = self.flags_of[command]
        return {name: value for name, value in zip(self.names, widget_values) if name in flags}

    def value_updates(self, values: dict[str, Any]) -> list:
        """Updates for :attr:`components` that show ``values`` and every other flag at its default."""
        return [gr.update(value=widget_value(self.specs[name], values.get(name, self.specs[name].default)))
                for name in self.names]

    # -- errors and visibility ---------------------------------------------------------------------------

    @property
    def error_components(self) -> list:
        """The error lines under the widgets, then the Advanced accordion (opened when it holds an error)."""
        return [*(self.errors[name] for name in self.names), self.advanced]

    def error_updates(self, errors: dict[str, str]) -> list:
        """Updates for :attr:`error_components`: each message under its flag's widget, the others hidden."""
        updates = [gr.update(value=f"⚠ {errors[name]}", visible=True) if name in errors
                   else gr.update(value="", visible=False) for name in self.names]
        updates.append(gr.update(open=True) if self.advanced_names & set(errors) else gr.update())
        return updates

    @property
    def visibility_components(self) -> list:
        """The sections and widgets whose visibility depends on the selected command."""
        return [*(box for box, _ in self.sections), *self.components]

    def visibility_updates(self, command: str) -> list:
        """Updates for :attr:`visibility_components`: only ``command``'s flags shown."""
        flags = self.flags_of[command]
        return [*(gr.update(visible=bool(names & flags) or not names) for _, names in self.sections),
                *(gr.update(visible=name in flags) for name in self.names)]
