"""The configuration layer, below every layer that reads it: the project's paths and the typed ``RunConfig``
(``run_config``), the preset's resolution (``resolve``, with ``schema`` and ``checks``), the plain-data tables
the checks need (``stages``, ``variants``), and the process's runtime set-up (``runtime``)."""
