import importlib

import pytest

PACKAGES = [
    "liponet",
    "liponet.functional",
    "liponet.layers",
    "liponet.models",
    "liponet.certify",
    "liponet.data",
    "liponet.train",
    "liponet.metrics",
    "liponet.physics",
    "liponet.interop",
    "liponet.export",
]


@pytest.mark.parametrize("name", PACKAGES)
def test_every_name_in_all_exists(name):
    module = importlib.import_module(name)
    for attr in module.__all__:
        assert hasattr(module, attr), f"{name}.__all__ names missing {attr!r}"


def test_public_classes_document_their_lipschitz_constant():
    from liponet import layers, models

    for module in (layers, models):
        for attr in module.__all__:
            obj = getattr(module, attr)
            if isinstance(obj, type) and hasattr(obj, "lipschitz_bound"):
                doc = obj.__doc__ or ""
                assert "Lipschitz constant" in doc or obj.__name__ in {
                    "CertifiedModule",
                    "FullSort",
                    "ReLU",
                    "Abs",
                }, f"{attr} lacks a 'Lipschitz constant' docstring section"
