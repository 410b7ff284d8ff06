"""Recipes: one class per command, siblings sharing plain step functions.

``sft``/``pt`` (:mod:`.sft`), ``rlhf`` (:mod:`.rlhf`), ``infer`` (:mod:`.infer`), ``eval``
(:mod:`.eval`), ``export`` (:mod:`.export`), ``deploy`` (:mod:`.deploy`) and ``data lint|preview``
(:mod:`.data`). Each meets :class:`~swiftkit.recipes.base.Recipe`: ``Recipe(config, host)``,
``setup()``, ``run()``. Training steps they share are in :mod:`.steps`, the engine step of
infer/eval/deploy in :mod:`.engines`.
"""
