"""hpa_utils: the library behind the HPA course-report notebooks.

The notebooks import these modules and only narrate; see README.md.
"""

__version__ = "0.1.0"
