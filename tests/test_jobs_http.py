"""web + lb payloads for real: nginx with the web job's config and page, HAProxy with the lb job's config in front.

What runs for real: Nomad's HCL2 parser (the template texts), `nginx -t`, `haproxy -c`, two nginx and one HAProxy
from Debian on loopback ports, HTTP requests through HAProxy. What stands in (tests/jobs_support.py): Nomad's
scheduler is the test placing two nginx on two loopback ports; Consul's `service "web"` lookup is the list of
those two (address 127.0.0.1, their ports); Docker's container paths and ports (`listen 8080;`, `bind *:8080`,
`/tmp/` for nginx's pid and buffers, its access log on
`/dev/stdout`) are a scratch folder and loopback ports; `{{ env "NOMAD_TASK_DIR" }}` and
`{{ env "NOMAD_ALLOC_NAME" }}` are given test values.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import urllib.error
import urllib.request
from contextlib import ExitStack
from pathlib import Path

import pytest

from nomadic.jobs import spec
from tests import jobs_support as js

pytestmark = pytest.mark.integration


def web_templates(tmp_path: Path) -> dict[str, str]:
    found = js.templates(js.nomad_job(js.rendered(spec.Job.WEB, tmp_path), tmp_path))
    assert set(found) == {"local/nginx.conf", "local/www/index.html"}
    return found


def lb_template(tmp_path: Path) -> str:
    found = js.templates(js.nomad_job(js.rendered(spec.Job.LB, tmp_path), tmp_path))
    assert set(found) == {"local/haproxy.cfg"}
    return found["local/haproxy.cfg"]


def nginx_files(found: dict[str, str], folder: Path, port: int, alloc: str) -> Path:
    env = {"NOMAD_TASK_DIR": str(folder / "local"), "NOMAD_ALLOC_NAME": alloc}
    conf = js.render_template(found["local/nginx.conf"], env)
    conf = js.replace_once(conf, "listen 8080;", f"listen 127.0.0.1:{port};")
    conf = js.replace_once(conf, "pid /tmp/", f"pid {folder}/")
    conf = js.replace_once(conf, "access_log /dev/stdout;", f"access_log {folder}/access.log;")
    conf = conf.replace("_temp_path /tmp/", f"_temp_path {folder}/")
    js.write(folder, "local/www/index.html", js.render_template(found["local/www/index.html"], env))
    return js.write(folder, "nginx.conf", conf)


def haproxy_file(text: str, folder: Path, port: int, backends: list[js.Service]) -> Path:
    cfg = js.render_template(text, {}, {"web": backends})
    cfg = js.replace_once(cfg, "bind *:8080", f"bind 127.0.0.1:{port}")
    return js.write(folder, "haproxy.cfg", cfg)


def get(port: int, path: str = "/") -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as r:
            return r.status, r.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, ""


def test_rendered_configs_pass_the_daemons_own_checks(tmp_path: Path):
    nginx, haproxy = js.tool("nginx"), js.tool("haproxy")
    folder = js.scratch()
    try:
        conf = nginx_files(web_templates(tmp_path), folder, js.free_port(), "web.web[0]")
        check = subprocess.run([*js.as_daemon_user(), nginx, "-t", "-e", "stderr", "-c", str(conf)],
                               capture_output=True, text=True)  # fmt: skip
        assert check.returncode == 0, check.stderr
        text = lb_template(tmp_path)
        for backends in ([js.Service("demo-01", "10.0.0.2", 23456), js.Service("demo-02", "10.0.0.3", 25000)], []):
            cfg = haproxy_file(text, folder, js.free_port(), backends)
            check = subprocess.run([haproxy, "-c", "-f", str(cfg)], capture_output=True, text=True)
            assert check.returncode == 0, check.stdout + check.stderr
            assert cfg.read_text().count("    server ") == len(backends)
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def test_haproxy_serves_the_page_from_both_nginx_and_survives_one_stopping(tmp_path: Path):
    nginx, haproxy = js.tool("nginx"), js.tool("haproxy")
    found, lb_text = web_templates(tmp_path), lb_template(tmp_path)
    folder = js.scratch()
    try:
        with ExitStack() as stack:
            backends, children = [], []
            for index in range(2):
                sub, port = folder / f"web{index}", js.free_port()
                js.write(folder, f"web{index}/.keep", "")
                conf = nginx_files(found, sub, port, f"web.web[{index}]")
                children.append(stack.enter_context(js.daemon(
                    [nginx, "-e", "stderr", "-p", str(sub), "-c", str(conf), "-g", "daemon off;"],
                    sub / "nginx.log", lambda p=port: js.tcp_open(p), f"nginx {index}",
                )))  # fmt: skip
                backends.append(js.Service(f"demo-0{index + 1}", "127.0.0.1", port))
            lb_port = js.free_port()
            cfg = haproxy_file(lb_text, folder, lb_port, backends)
            stack.enter_context(js.daemon([haproxy, "-W", "-db", "-f", str(cfg)], folder / "haproxy.log",
                                          lambda: js.tcp_open(lb_port), "haproxy"))  # fmt: skip

            seen = set()
            for _ in range(6):
                status, body = get(lb_port)
                assert status == 200 and "<h1>Hello from demo</h1>" in body
                seen.add(body.split("allocation ", 1)[1].split(",", 1)[0])
            assert seen == {"web.web[0]", "web.web[1]"}  # round robin over both instances
            assert get(backends[0].port, "/healthz") == (200, "ok\n")

            js.stop(children[0])  # one nginx dies: HAProxy retries on the other, then its checks take it out
            results = [get(lb_port) for _ in range(30)]
            assert [s for s, _ in results] == [200] * 30
            assert all("allocation web.web[1]," in body for _, body in results)
            time.sleep(5)  # past `fall 2` at `inter 2s`: the dead one is out of the rotation, not just retried
            assert "is DOWN" in (folder / "haproxy.log").read_text()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
