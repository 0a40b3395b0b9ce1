import pytest

from utils.registry import Registry


def test_registry_refuses_duplicates_and_lists_names():
    reg = Registry("thing")

    @reg.register("a")
    class A:
        def __init__(self, x=1):
            self.x = x

    with pytest.raises(ValueError, match="already registered"):
        reg.register("A")(A)
    assert reg.build("A", x=3).x == 3
    assert "a" in reg and "b" not in reg
    with pytest.raises(KeyError, match="valid names: a"):
        reg.get("b")
