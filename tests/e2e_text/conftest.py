"""The text/image stack reuses the tiny Hugging Face model fixture of tests/text."""

from tests.text.conftest import hf_dir  # noqa: F401 (fixture)
