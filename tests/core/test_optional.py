"""A missing optional package is one line naming the extra to install."""
import pytest

from treefuse.errors import TreefuseError
from treefuse.optional import import_optional


def test_a_missing_package_names_the_extra():
    with pytest.raises(TreefuseError, match=r"^no-such-runtime is not installed; pip install 'treefuse\[nothing\]'$"):
        import_optional("treefuse_no_such_module", "no-such-runtime", "nothing")


def test_a_present_package_is_returned():
    assert import_optional("json", "json", "core").dumps({}) == "{}"
