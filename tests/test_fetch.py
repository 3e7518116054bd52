"""``unetlib data fetch`` offline: tiny archives served from a local HTTP server on 127.0.0.1."""

from __future__ import annotations

import http.server
import io
import os
import re
import shutil
import threading
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import pytest
import tifffile

from unetlib import data
from unetlib import fetch as fetch_mod
from unetlib import manifest as manifests
from unetlib.cli import main
from unetlib.errors import UnetlibError
from unetlib.fetch import fetch

U373 = "PhC-C2DH-U373"


# --------------------------------------------------------------------------- a local server


class _Handler(http.server.BaseHTTPRequestHandler):
    routes: dict[str, tuple[bytes, str]] = {}

    def do_GET(self):  # noqa: N802 (http.server's name)
        body, mode = self.routes.get(self.path, (b"", "missing"))
        if mode == "missing":
            self.send_error(404)
            return
        if mode == "redirect":  # body: the Location
            self.send_response(302)
            self.send_header("Location", body.decode())
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        self.send_response(200)
        if mode == "trickle":  # one byte at a time, slowly: every read succeeds, the download never ends
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            try:
                for i in range(len(body)):
                    self.wfile.write(body[i:i + 1])
                    self.wfile.flush()
                    time.sleep(0.3)
            except OSError:  # the client gave up
                pass
            self.close_connection = True
            return
        if mode != "nolength":  # "nolength": the body ends when the connection closes
            self.send_header("Content-Length", str(10**12 if mode == "biglength" else len(body)))
        self.end_headers()
        # "truncate": announce the whole length, send half, then close the connection
        self.wfile.write(body[: len(body) // 2] if mode == "truncate" else body)
        self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture
def server(monkeypatch):
    """Serve ``routes`` (path -> (bytes, mode)); yields (base URL, routes). Stops after the test."""
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    routes: dict[str, tuple[bytes, str]] = {}
    handler = type("Handler", (_Handler,), {"routes": routes})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    watchdog = threading.Timer(60, httpd.shutdown)  # stops by itself even if teardown never runs
    watchdog.daemon = True
    watchdog.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", routes
    finally:
        watchdog.cancel()
        httpd.shutdown()
        httpd.server_close()
        thread.join(5)


# --------------------------------------------------------------------------- tiny datasets


def write_tiny_ctc(root: Path) -> Path:
    rng = np.random.default_rng(2)
    folder = root / U373
    for seq in data.SEQUENCES:
        raw, gt = folder / seq, folder / f"{seq}_GT"
        for sub in (raw, gt / "SEG", gt / "TRA"):
            sub.mkdir(parents=True)
        for t in range(3):
            frame = rng.integers(0, 256, (5, 6), dtype=np.uint8)
            tifffile.imwrite(raw / f"t{t:03d}.tif", frame, compression="lzw")
            marker = np.ones((5, 6), np.uint16)
            tifffile.imwrite(gt / "TRA" / f"man_track{t:03d}.tif", marker, compression="lzw")
        mask = np.full((5, 6), 2, np.uint16)
        tifffile.imwrite(gt / "SEG" / "man_seg001.tif", mask, compression="lzw")
        (gt / "TRA" / "man_track.txt").write_text("1 0 2 0\n")
    return folder


def zip_folder(folder: Path, top: str | None, change: str | None = None) -> bytes:
    """Zip ``folder`` under the top folder ``top`` (None: flat); flip a byte of file ``change``."""
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                rel = path.relative_to(folder).as_posix()
                payload = path.read_bytes()
                if rel == change:
                    payload = payload[:-1] + bytes([payload[-1] ^ 0xFF])
                zf.writestr(f"{top}/{rel}" if top else rel, payload)
    return buffer.getvalue()


@pytest.fixture
def tiny(tmp_path):
    """(manifest, folder) of a tiny CTC dataset named like U373."""
    source = tmp_path / "source"
    folder = write_tiny_ctc(source)
    return manifests.make_manifest(source, (U373,)), folder


def leftovers(root: Path) -> list[str]:
    return sorted(p.name for p in root.iterdir()) if root.exists() else []


# --------------------------------------------------------------------------- URLs


def test_source_urls(monkeypatch):
    monkeypatch.delenv("UNETLIB_DATA_URL", raising=False)
    official = f"https://data.celltrackingchallenge.net/training-datasets/{U373}.zip"
    assert fetch_mod.source_urls(U373) == [official]
    isbi = fetch_mod.source_urls("isbi2012")
    assert [u.rsplit("/", 1)[1] for u in isbi] == list(data.ISBI_FILES)
    assert all("b45af4d458437d8281cc218a07fd4380818ece4a" in u for u in isbi)
    monkeypatch.setenv("UNETLIB_DATA_URL", "http://mirror/x/")
    assert fetch_mod.source_urls(U373) == [f"http://mirror/x/{U373}.zip"]
    assert fetch_mod.source_urls(U373, "http://other/a.zip") == ["http://other/a.zip"]
    with pytest.raises(UnetlibError, match="unknown dataset"):
        fetch_mod.source_urls("mnist")


# --------------------------------------------------------------------------- fetch


@pytest.mark.parametrize("top", [U373, None])
def test_fetch_installs_a_verified_dataset(server, tiny, tmp_path, top):
    base, routes = server
    manifest, folder = tiny
    routes[f"/{U373}.zip"] = (zip_folder(folder, top), "ok")
    root = tmp_path / "root"
    result = fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    assert result == fetch_mod.FetchResult(root / U373, fetched=True)
    assert manifests.verify(root, [U373], manifest).ok
    assert leftovers(root) == [U373]  # no temporary files left
    loaded = data.load_ctc(U373, "02", root, verify=False)  # verified against the test's own manifest above
    np.testing.assert_array_equal(loaded.frames[1], tifffile.imread(folder / "02" / "t001.tif"))

    # a second fetch leaves the complete dataset as it is
    mtimes = {p: p.stat().st_mtime_ns for p in (root / U373).rglob("*")}
    again = fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    assert again.fetched is False
    assert {p: p.stat().st_mtime_ns for p in (root / U373).rglob("*")} == mtimes


def test_truncated_download_installs_nothing(server, tiny, tmp_path):
    base, routes = server
    manifest, folder = tiny
    routes[f"/{U373}.zip"] = (zip_folder(folder, U373), "truncate")
    root = tmp_path / "root"
    with pytest.raises(UnetlibError, match="incomplete") as err:
        fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    assert f"{base}/{U373}.zip" in str(err.value)
    assert leftovers(root) == []
    assert not manifests.verify(root, [U373], manifest).ok


def test_checksum_mismatch_installs_nothing(server, tiny, tmp_path):
    base, routes = server
    manifest, folder = tiny
    routes[f"/{U373}.zip"] = (zip_folder(folder, U373, change="01_GT/SEG/man_seg001.tif"), "ok")
    root = tmp_path / "root"
    with pytest.raises(UnetlibError, match="does not match the checksum manifest") as err:
        fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    assert f"{U373}/01_GT/SEG/man_seg001.tif" in str(err.value)
    assert leftovers(root) == []
    assert not manifests.verify(root, [U373], manifest).ok


def test_not_a_zip_and_http_errors_are_clear(server, tiny, tmp_path):
    base, routes = server
    manifest, _ = tiny
    routes[f"/{U373}.zip"] = (b"<html>not found</html>", "ok")
    root = tmp_path / "root"
    with pytest.raises(UnetlibError, match="cannot be unpacked"):
        fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    with pytest.raises(UnetlibError, match="download of .*nope.zip failed.*HTTP Error 404"):
        fetch(U373, root, url=f"{base}/nope.zip", manifest=manifest, progress=False, timeout=10)
    assert leftovers(root) == []


def test_unsafe_archive_paths_are_refused(server, tiny, tmp_path):
    base, routes = server
    manifest, _ = tiny
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("../evil.txt", b"x")
    routes[f"/{U373}.zip"] = (buffer.getvalue(), "ok")
    root = tmp_path / "root"
    with pytest.raises(UnetlibError, match="unsafe path"):
        fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    assert not (tmp_path / "evil.txt").exists() and leftovers(root) == []


def test_existing_incomplete_dataset_is_not_touched(server, tiny, tmp_path):
    base, routes = server
    manifest, folder = tiny
    routes[f"/{U373}.zip"] = (zip_folder(folder, U373), "ok")
    root = tmp_path / "root"
    fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    (root / U373 / "02" / "t002.tif").unlink()
    before = sorted(p for p in (root / U373).rglob("*"))
    with pytest.raises(UnetlibError, match="move it away"):
        fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    assert sorted(p for p in (root / U373).rglob("*")) == before


def test_fetch_isbi_stacks_checks_pixels(server, tmp_path):
    base, routes = server
    source = tmp_path / "source" / "isbi2012"
    source.mkdir(parents=True)
    stacks = {}
    for i, name in enumerate(data.ISBI_FILES):
        stacks[name] = np.full((2, 4, 4), i * 100, np.uint8)
        tifffile.imwrite(source / name, stacks[name])
    manifest = manifests.make_manifest(source.parent, ("isbi2012",))
    for name in data.ISBI_FILES:  # the mirror's files: other bytes, same pixels
        buffer = io.BytesIO()
        tifffile.imwrite(buffer, stacks[name], compression="zlib")
        routes[f"/{name}"] = (buffer.getvalue(), "ok")
    root = tmp_path / "root"
    assert fetch("isbi2012", root, url=base, manifest=manifest, progress=True, timeout=10).fetched
    assert manifests.verify(root, ["isbi2012"], manifest).ok

    other = tmp_path / "other"
    buffer = io.BytesIO()
    tifffile.imwrite(buffer, stacks["test-volume.tif"] + 1)
    routes["/test-volume.tif"] = (buffer.getvalue(), "ok")
    with pytest.raises(UnetlibError, match="isbi2012/test-volume.tif: pixel sha256") as err:
        fetch("isbi2012", other, url=base, manifest=manifest, progress=False, timeout=10)
    assert "data/README.md" in str(err.value)
    assert leftovers(other) == []


def test_cli_fetch_uses_env_url_and_reports_errors(server, tiny, tmp_path, monkeypatch, capsys):
    base, routes = server
    manifest, folder = tiny
    routes[f"/{U373}.zip"] = (zip_folder(folder, U373), "truncate")
    monkeypatch.setenv("UNETLIB_DATA_URL", base)
    # the CLI checks against the shipped manifest, which the tiny archive cannot match
    assert main(["data", "fetch", U373, "--root", str(tmp_path / "root"), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "unetlib data: error:" in err and "incomplete" in err
    assert leftovers(tmp_path / "root") == []

    routes[f"/{U373}.zip"] = (zip_folder(folder, U373), "ok")
    monkeypatch.setattr(manifests, "read_manifest", lambda path=None: manifest)
    args = ["data", "fetch", U373, "--root", str(tmp_path / "root"), "--no-progress"]
    assert main(args) == 0
    assert "fetched and verified" in capsys.readouterr().out
    assert main(args) == 0
    assert "already present" in capsys.readouterr().out


def test_reproduce_fetches_only_the_missing_datasets_and_prints_the_terms(server, tiny, tmp_path, monkeypatch,
                                                                          capsys):
    from unetlib.reproduce import fetch_missing

    base, routes = server
    manifest, folder = tiny
    routes[f"/{U373}.zip"] = (zip_folder(folder, U373), "ok")
    monkeypatch.setenv("UNETLIB_DATA_URL", base)
    monkeypatch.setattr(manifests, "read_manifest", lambda path=None: manifest)
    root = tmp_path / "root"
    (root / "isbi2012").mkdir(parents=True)  # present: never downloaded again
    assert fetch_missing(["01_isbi2012_em", "02_phc_u373", "03_paper_tables"], root) == [U373]
    out = capsys.readouterr().out
    assert "Terms of use" in out and f"fetching {U373} from {base}" in out and "isbi2012 from" not in out
    report = manifests.verify(root, [U373], manifest)  # installed and checked against the manifest
    assert report.ok and report.checked == len(manifest)
    assert fetch_missing(["02_phc_u373"], root) == [] and capsys.readouterr().out == ""


# --------------------------------------------------------------------------- untrusted sources


def test_source_urls_take_https_or_an_explicit_http_mirror_only(monkeypatch):
    monkeypatch.delenv("UNETLIB_DATA_URL", raising=False)
    assert all(u.startswith("https://") for n in data.DATASETS for u in fetch_mod.source_urls(n))
    for bad in ("file:///tmp/x", "ftp://mirror/x", "FILE:///tmp/a.zip", "mirror/x", "gopher://m/x"):
        with pytest.raises(UnetlibError, match="only https") as err:
            fetch_mod.source_urls(U373, bad)
        assert bad in str(err.value) and "--url" in str(err.value)
        monkeypatch.setenv("UNETLIB_DATA_URL", bad)
        with pytest.raises(UnetlibError, match="UNETLIB_DATA_URL"):
            fetch_mod.source_urls("isbi2012")
        monkeypatch.delenv("UNETLIB_DATA_URL")
    # an explicit mirror may be plain http; the defaults may not
    assert fetch_mod.source_urls(U373, "http://mirror/x") == [f"http://mirror/x/{U373}.zip"]
    monkeypatch.setattr(fetch_mod, "CTC_URL", "http://data.celltrackingchallenge.net/training-datasets")
    with pytest.raises(UnetlibError, match="only https"):
        fetch_mod.source_urls(U373)


def _redirect(from_url: str, to_url: str):
    handler = fetch_mod._SafeRedirects()
    request = urllib.request.Request(from_url)
    return handler.redirect_request(request, None, 302, "Found", {}, to_url)


def test_redirects_never_downgrade_from_https():
    assert _redirect("https://a/x.zip", "https://b/y.zip").full_url == "https://b/y.zip"
    assert _redirect("http://mirror/x.zip", "http://mirror/y.zip").full_url == "http://mirror/y.zip"
    assert _redirect("http://mirror/x.zip", "https://b/y.zip").full_url == "https://b/y.zip"
    for src, dst in [("https://a/x.zip", "http://b/y.zip"), ("https://a/x.zip", "ftp://b/y.zip"),
                     ("http://mirror/x.zip", "ftp://b/y.zip"), ("http://mirror/x.zip", "file:///etc/passwd")]:
        with pytest.raises(UnetlibError, match="redirect") as err:
            _redirect(src, dst)
        assert src in str(err.value) and dst in str(err.value)


def test_mirror_redirects_are_followed_but_not_to_ftp(server, tiny, tmp_path):
    base, routes = server
    manifest, folder = tiny
    routes["/real.zip"] = (zip_folder(folder, U373), "ok")
    routes[f"/{U373}.zip"] = (f"{base}/real.zip".encode(), "redirect")
    root = tmp_path / "root"
    assert fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10).fetched
    routes[f"/{U373}.zip"] = (b"ftp://127.0.0.1:1/real.zip", "redirect")
    with pytest.raises(UnetlibError, match="refused the redirect .* to ftp://127.0.0.1:1/real.zip"):
        fetch(U373, tmp_path / "other", url=base, manifest=manifest, progress=False, timeout=5)
    assert leftovers(tmp_path / "other") == []


def test_fetch_installs_only_the_manifest_files(server, tiny, tmp_path, monkeypatch, capsys):
    base, routes = server
    manifest, folder = tiny
    (folder / "01_ST" / "SEG").mkdir(parents=True)  # like the official zips' silver truth
    (folder / "01_ST" / "SEG" / "man_seg000.tif").write_bytes(b"silver truth")
    (folder / "README.txt").write_text("not in the manifest")
    routes[f"/{U373}.zip"] = (zip_folder(folder, U373), "ok")
    root = tmp_path / "root"
    result = fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    assert result.fetched and result.skipped == 2
    installed = sorted(p.relative_to(root).as_posix() for p in (root / U373).rglob("*") if p.is_file())
    assert installed == sorted(manifest)
    assert manifests.verify(root, [U373], manifest).extra == []

    monkeypatch.setattr(manifests, "read_manifest", lambda path=None: manifest)
    assert main(["data", "fetch", U373, "--root", str(tmp_path / "cli"), "--url", base,
                 "--no-progress"]) == 0
    assert "2 archive members not in the manifest were not installed" in capsys.readouterr().out


def test_fetch_needs_a_manifest_with_sizes(tiny, tmp_path):
    manifest, _ = tiny
    old = manifests.parse_manifest("\n".join(f"{e.digest}  {e.method}  {e.path}" for e in manifest.values()))
    with pytest.raises(UnetlibError, match="no file sizes"):
        fetch(U373, tmp_path / "root", url="http://127.0.0.1:1", manifest=old, progress=False)
    assert leftovers(tmp_path / "root") == []


def test_member_whose_size_differs_from_the_manifest_is_refused(server, tiny, tmp_path):
    base, routes = server
    manifest, folder = tiny
    grown = folder / "01" / "t001.tif"
    grown.write_bytes(grown.read_bytes() + b"\0")
    routes[f"/{U373}.zip"] = (zip_folder(folder, U373), "ok")
    root = tmp_path / "root"
    size = manifest[f"{U373}/01/t001.tif"].size
    with pytest.raises(UnetlibError, match=f"{U373}/01/t001.tif declares {size + 1} bytes, "
                                           f"the manifest {size}"):
        fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    assert leftovers(root) == []


def _bomb(manifest_path: str, size: int, lie_to: int | None = None) -> bytes:
    """A zip whose one member ``manifest_path`` inflates to ``size`` zero bytes.

    ``lie_to``: patch the sizes in both headers to this value (a zip bomb that lies).
    """
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as zf:
        with zf.open(f"{U373}/" + manifest_path.split("/", 1)[1], "w") as member:
            for _ in range(size >> 20):
                member.write(bytes(1 << 20))
    raw = bytearray(buffer.getvalue())
    if lie_to is not None:
        local, central = raw.find(b"PK\x03\x04"), raw.rfind(b"PK\x01\x02")
        raw[local + 22: local + 26] = lie_to.to_bytes(4, "little")
        raw[central + 24: central + 28] = lie_to.to_bytes(4, "little")
    return bytes(raw)


@pytest.mark.parametrize("lie", [False, True])
def test_zip_bomb_is_refused_without_writing_it(server, tiny, tmp_path, monkeypatch, lie):
    base, routes = server
    manifest, _ = tiny
    target = f"{U373}/01/t000.tif"
    bomb = _bomb(target, 200 << 20, manifest[target].size if lie else None)
    assert len(bomb) < 250_000
    routes[f"/{U373}.zip"] = (bomb, "ok")
    largest = []
    real_rmtree = shutil.rmtree

    def measuring_rmtree(path, *args, **kwargs):  # what the hidden folder held when it was removed
        largest.append(sum(p.stat().st_size for p in Path(path).rglob("*") if p.is_file()))
        real_rmtree(path, *args, **kwargs)

    monkeypatch.setattr(fetch_mod.shutil, "rmtree", measuring_rmtree)
    root = tmp_path / "root"
    with pytest.raises(UnetlibError, match="manifest|cannot be unpacked") as err:
        fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    assert "nothing was installed" in str(err.value).lower()
    assert leftovers(root) == []
    assert largest and max(largest) < len(bomb) + manifest[target].size + 1
    if not lie:
        assert f"declares {200 << 20} bytes" in str(err.value)


def test_bounded_copy_stops_once_the_limit_is_passed(tmp_path):
    out = io.BytesIO()
    fetch_mod._copy_bounded(io.BytesIO(b"x" * 10), out, 10, "a/b.tif")
    assert out.getvalue() == b"x" * 10
    out = io.BytesIO()
    with pytest.raises(UnetlibError, match="a/b.tif inflates to more than its 10 bytes"):
        fetch_mod._copy_bounded(io.BytesIO(b"x" * (3 << 20)), out, 10, "a/b.tif")
    assert len(out.getvalue()) <= 10


def test_download_limit_follows_the_manifest(tiny):
    manifest, _ = tiny
    total = sum(e.size for e in manifest.values())
    assert fetch_mod.download_limit(U373, manifest) == 2 * total + (50 << 20)
    shipped = manifests.read_manifest()
    assert fetch_mod.download_limit("isbi2012", shipped) == 4 * 30 * 512 * 512 + (1 << 20)


@pytest.mark.parametrize("mode", ["biglength", "nolength"])
def test_oversized_download_is_refused(server, tiny, tmp_path, monkeypatch, mode):
    base, routes = server
    manifest, folder = tiny
    monkeypatch.setattr(fetch_mod, "_ZIP_MARGIN", 0)  # limit: twice the manifest's total size
    total = sum(e.size for e in manifest.values())
    padded = io.BytesIO(zip_folder(folder, U373))
    with zipfile.ZipFile(padded, "a") as zf:  # an unused member that makes the download too big
        zf.writestr(f"{U373}/02_ST/padding.bin", np.random.default_rng(0).bytes(3 * total))
    routes[f"/{U373}.zip"] = (padded.getvalue(), mode)
    root = tmp_path / "root"
    with pytest.raises(UnetlibError, match=f"larger than {2 * total} bytes") as err:
        fetch(U373, root, url=base, manifest=manifest, progress=False, timeout=10)
    assert f"{base}/{U373}.zip" in str(err.value) and "nothing was installed" in str(err.value)
    assert leftovers(root) == []


def test_isbi_download_is_bounded_by_the_decoded_size(server, tmp_path):
    base, routes = server
    source = tmp_path / "source" / "isbi2012"
    source.mkdir(parents=True)
    for name in data.ISBI_FILES:
        tifffile.imwrite(source / name, np.zeros((2, 4, 4), np.uint8))
    manifest = manifests.make_manifest(source.parent, ("isbi2012",))
    for name in data.ISBI_FILES:
        routes[f"/{name}"] = ((source / name).read_bytes(), "ok")
    routes["/train-labels.tif"] = (bytes(2 << 20), "nolength")  # 2 MiB for 32 pixels
    root = tmp_path / "root"
    with pytest.raises(UnetlibError, match=f"larger than {4 * 32 + (1 << 20)} bytes") as err:
        fetch("isbi2012", root, url=base, manifest=manifest, progress=False, timeout=10)
    assert "train-labels.tif" in str(err.value)
    assert leftovers(root) == []



# --------------------------------------------------------------------------- hangs and leftovers


def test_a_trickling_source_meets_the_total_time_bound(server, tiny, tmp_path, monkeypatch, capsys):
    base, routes = server
    manifest, folder = tiny
    routes[f"/{U373}.zip"] = (zip_folder(folder, U373), "trickle")
    monkeypatch.setenv(fetch_mod.ENV_TIMEOUT, "2")
    start = time.monotonic()
    with pytest.raises(UnetlibError, match=fetch_mod.ENV_TIMEOUT) as err:
        fetch(U373, tmp_path / "root", url=base, manifest=manifest, progress=False, timeout=10)
    assert time.monotonic() - start < 10 and "did not finish in time" in str(err.value)
    assert leftovers(tmp_path / "root") == []  # nothing installed, no partial download left


def test_bad_timeout_setting_is_named(server, tiny, tmp_path, monkeypatch):
    base, routes = server
    manifest, _ = tiny
    monkeypatch.setenv(fetch_mod.ENV_TIMEOUT, "soon")
    with pytest.raises(UnetlibError, match="UNETLIB_FETCH_TIMEOUT='soon'"):
        fetch(U373, tmp_path / "root", url=base, manifest=manifest, progress=False)


def test_a_malformed_mirror_url_names_the_fix(tmp_path):
    with pytest.raises(UnetlibError, match=r"not a valid URL .*--url"):
        fetch(U373, tmp_path / "root", url="http://[::1", progress=False)


def test_a_download_left_by_a_killed_fetch_is_named_and_removed(server, tiny, tmp_path, capsys):
    import subprocess
    import sys

    base, routes = server
    manifest, folder = tiny
    routes[f"/{U373}.zip"] = (zip_folder(folder, U373), "ok")
    root = tmp_path / "root"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    left = root / f".{U373}.fetch-k9"
    left.mkdir(parents=True)
    (left / fetch_mod.OWNER).write_text(f"{os.uname().nodename} {dead.pid}\n")
    (left / f"{U373}.zip.part").write_bytes(b"half")
    assert main(["data", "info", "--root", str(root)]) == 0
    assert f"{left} is a partial download left by an interrupted fetch" in capsys.readouterr().out
    result = fetch(U373, root, url=base, manifest=manifest, progress=False)
    assert result.removed == (left,) and not left.exists() and leftovers(root) == [U373]


class _Offline:
    """An opener whose every request fails as it does without a network (no name resolution)."""

    def open(self, request, timeout=None):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))


def _options(line: str) -> list[str]:
    return re.findall(r"(?<![\w-])--[a-z][a-z-]*", line)


def test_offline_fetch_names_the_data_variable_and_only_real_options(tmp_path, monkeypatch):
    monkeypatch.setattr(urllib.request, "build_opener", lambda *handlers: _Offline())
    monkeypatch.delenv("UNETLIB_DATA_URL", raising=False)
    with pytest.raises(UnetlibError) as err:
        fetch("isbi2012", tmp_path / "root", progress=False)
    message = str(err.value)
    assert "Temporary failure in name resolution" in message and "nothing was installed" in message
    assert "set UNETLIB_DATA to the folder that holds them" in message and "UNETLIB_DATA_URL" in message
    assert _options(message) == ["--url"] and "--url of `unetlib data fetch`" in message


def test_offline_reproduce_is_one_line_naming_unetlib_data(tmp_path, monkeypatch, capsys):
    """`python -m unetlib.reproduce` offline: one line that names UNETLIB_DATA and no option reproduce lacks."""
    from unetlib import reproduce

    empty = tmp_path / "datasets"
    empty.mkdir()
    monkeypatch.setenv("UNETLIB_DATA", str(empty))
    monkeypatch.delenv("UNETLIB_DATA_URL", raising=False)
    monkeypatch.setattr(urllib.request, "build_opener", lambda *handlers: _Offline())
    code = reproduce.main(["--profile", "smoke", "--only", "01_isbi2012_em", "--output-dir", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert err.startswith("reproduce: error: download of ") and "UNETLIB_DATA to the folder" in err
    assert _options(err) == ["--url"] and "--url of `unetlib data fetch`" in err
    assert leftovers(empty) == []
