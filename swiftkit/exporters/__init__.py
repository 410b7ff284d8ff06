"""Export formats (``--export_format``): write a trained model in a form other tools load without swiftkit.

The ``export`` recipe (:mod:`swiftkit.recipes.export`) loads the model and calls the chosen format.
"""
