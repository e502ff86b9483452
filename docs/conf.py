"""Sphinx configuration: furo theme, numpydoc docstrings, Markdown pages via myst-parser.

Build (offline, warnings are errors):
    DOCS_OFFLINE=1 python -m sphinx -b html -W --keep-going -E docs docs/_build/html
"""

import os

project = "Succinct Compression"
author = "Succinct Compression developers"
extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.intersphinx",
    "numpydoc",
    "myst_parser",
]
source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
exclude_patterns = ["_build"]
html_theme = "furo"
autosummary_generate = True
numpydoc_show_class_members = False
nitpicky = False
# intersphinx fetches inventories over the network; offline each becomes a warning (-W fails)
intersphinx_mapping = (
    {}
    if os.environ.get("DOCS_OFFLINE")
    else {
        "python": ("https://docs.python.org/3", None),
        "numpy": ("https://numpy.org/doc/stable", None),
    }
)
