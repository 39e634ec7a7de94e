"""Model builders referenced by configs (``builder: "lrp_tasks.models.digits:build_digits_cnn"``).

Builders return the architecture only; weights come from the file the config names, loaded
without pickle code execution by ``lrp_tasks.sources.models.load_model``.
"""
