"""The analytics.js Throughline serves is analytics-next's own standalone build, byte for byte,
at the version browser-sdks/package-lock.json pins (scripts/browser-bundle copies it)."""

import json
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

from profiles.browser import BUNDLE_DIR
from tests.conftest import ROOT

PACKAGE = ROOT / "browser-sdks" / "node_modules" / "@segment" / "analytics-next"
needs_package = pytest.mark.skipif(not PACKAGE.is_dir(), reason="browser-sdks not installed (scripts/browser-sdks)")


def _shipped() -> list[Path]:
    return sorted(path for path in BUNDLE_DIR.rglob("*.js"))


@needs_package
def test_the_installed_package_is_the_one_the_lockfile_pins() -> None:
    lock = json.loads((ROOT / "browser-sdks" / "package-lock.json").read_text())
    pinned = lock["packages"]["node_modules/@segment/analytics-next"]["version"]
    assert json.loads((PACKAGE / "package.json").read_text())["version"] == pinned


@needs_package
def test_the_shipped_bundle_is_the_package_build_byte_for_byte() -> None:
    dist = PACKAGE / "dist" / "umd"
    expected = {"standalone.js": dist / "standalone.js"} | {
        f"bundles/{chunk.name}": chunk for chunk in dist.glob("*.bundle.*.js")
    }
    shipped = {str(path.relative_to(BUNDLE_DIR)): path for path in _shipped()}
    assert sorted(shipped) == sorted(expected)
    assert [name for name in shipped if shipped[name].read_bytes() != expected[name].read_bytes()] == []


@pytest.mark.django_db
def test_the_snippet_path_serves_the_shipped_standalone_bundle(client: Client, source: Any) -> None:
    response = client.get(f"/analytics.js/v1/{source.write_key}/analytics.min.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/javascript")
    assert response.content == (BUNDLE_DIR / "standalone.js").read_bytes()


def test_every_chunk_is_served_where_the_bundle_loads_it(client: Client) -> None:
    chunks = sorted((BUNDLE_DIR / "bundles").glob("*.js"))
    answers = [client.get(f"/analytics-next/bundles/{chunk.name}") for chunk in chunks]
    assert chunks
    assert [a.content for a in answers] == [chunk.read_bytes() for chunk in chunks]


def test_an_unknown_chunk_is_a_json_404(client: Client) -> None:
    response = client.get("/analytics-next/bundles/settings.bundle.0.js")
    assert (response.status_code, response.json()["code"]) == (404, "not_found")
