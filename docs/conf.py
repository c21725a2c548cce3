"""Sphinx configuration for the sqlaudit documentation."""

import sys
from pathlib import Path

# Make the package importable for autodoc without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

project = "sqlaudit"
author = "The sqlaudit developers"
copyright = "The sqlaudit developers"

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.napoleon",
    "sphinx.ext.viewcode",
]
# sphinx.ext.intersphinx (python, https://docs.sqlalchemy.org/en/20/) is left
# out on purpose: it fetches inventories over the network at build time.

source_suffix = {
    ".rst": "restructuredtext",
    ".md": "markdown",
}
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]

# autodoc
autodoc_typehints = "description"
autodoc_member_order = "bysource"

# napoleon: Google-style docstrings only
napoleon_google_docstring = True
napoleon_numpy_docstring = False

# MyST
myst_enable_extensions = ["colon_fence"]

# HTML output
html_theme = "furo"
html_title = "sqlaudit"
