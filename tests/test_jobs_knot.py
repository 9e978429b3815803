"""knotdns's payload for real: the knot.conf and zone its template blocks carry, checked and served by Debian's Knot.

What runs for real: Nomad's HCL2 parser (the template text), `knotc conf-check`, `kzonecheck`, and knotd answering
dnspython's queries on a loopback port. What stands in (tests/jobs_support.py): for Docker, the container's
`0.0.0.0@53`, `/rundir`, `/storage` and `user: knot:knot` become a loopback port, scratch folders and the test's
unprivileged user; for consul-template, `{{ env "NOMAD_TASK_DIR" }}` is the scratch folder holding the zone.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path
from typing import Iterator

import pytest

from nomadic.jobs import spec
from tests import jobs_support as js

dns = pytest.importorskip("dns")
import dns.edns  # noqa: E402
import dns.flags  # noqa: E402
import dns.message  # noqa: E402
import dns.query  # noqa: E402
import dns.rdatatype  # noqa: E402

pytestmark = pytest.mark.integration


# The rate limit the daemon under test runs with, set through the job's own setting (jobs.dns_rate_limit): a
# Python client on a shared 2-core machine cannot reliably send a burst far above the default 200/s per flow.
TEST_RATE_LIMIT = 20


def knot_files(tmp_path: Path, folder: Path, port: int) -> tuple[Path, Path]:
    """The job's two templates as Nomad's template runner would write them, placed for a loopback knotd."""
    job = js.rendered(spec.Job.KNOTDNS, tmp_path, dns_rate_limit=TEST_RATE_LIMIT)
    assert f"rate-limit: {TEST_RATE_LIMIT} " in job
    found = js.templates(js.nomad_job(job, tmp_path))
    assert set(found) == {"local/knot.conf", f"local/{js.DOMAIN}.zone"}
    conf = js.render_template(found["local/knot.conf"], {"NOMAD_TASK_DIR": str(folder / "local")})
    for old, new in (
        ("listen: [ 0.0.0.0@53 ]", f"listen: [ 127.0.0.1@{port} ]"),
        ('rundir: "/rundir"', f'rundir: "{folder / "run"}"'),
        ('storage: "/storage"', f'storage: "{folder / "db"}"'),
        ("    user: knot:knot\n", ""),
    ):
        conf = js.replace_once(conf, old, new)
    for sub in ("run", "db"):
        js.write(folder, f"{sub}/.keep", "")
    zone = js.write(folder, f"local/{js.DOMAIN}.zone", js.render_template(found[f"local/{js.DOMAIN}.zone"], {}))
    return js.write(folder, "knot.conf", conf), zone


@pytest.fixture(scope="module")
def knotd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    knotd_bin, knotc = js.tool("knotd"), js.tool("knotc")
    folder = js.scratch()
    port = js.free_port()
    conf, zone = knot_files(tmp_path_factory.mktemp("knot"), folder, port)
    subprocess.run([knotc, "-c", str(conf), "conf-check"], check=True, capture_output=True)

    def answers() -> bool:
        try:
            query(port, js.DOMAIN, "SOA", timeout=0.5)
            return True
        except Exception:
            return False

    try:
        with js.daemon([knotd_bin, "-c", str(conf)], folder / "knotd.log", answers, "knotd"):
            yield port
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def query(port: int, name: str, rdtype: str, timeout: float = 2.0, **kwargs: object) -> dns.message.Message:
    return dns.query.udp(dns.message.make_query(name, rdtype, **kwargs), "127.0.0.1", port=port, timeout=timeout)


def test_rendered_config_and_zone_pass_knots_own_checks(tmp_path: Path):
    folder = js.scratch()
    try:
        conf, zone = knot_files(tmp_path, folder, js.free_port())
        knotc = subprocess.run([js.tool("knotc"), "-c", str(conf), "conf-check"], capture_output=True, text=True)
        assert knotc.returncode == 0, knotc.stderr + knotc.stdout
        check = subprocess.run([js.tool("kzonecheck"), "-o", js.DOMAIN, str(zone)], capture_output=True, text=True)
        assert check.returncode == 0, check.stderr + check.stdout
    finally:
        shutil.rmtree(folder, ignore_errors=True)


def rrset(answer: dns.message.Message, name: str, rdtype: str) -> list[str]:
    found = answer.find_rrset(answer.answer, dns.name.from_text(name), dns.rdataclass.IN, dns.rdatatype.from_text(rdtype))
    return [r.to_text() for r in found]


def test_knotd_answers_soa_ns_and_a_authoritatively(knotd: int):
    soa = query(knotd, js.DOMAIN, "SOA")
    assert soa.flags & dns.flags.AA
    mname, rname, serial = rrset(soa, js.DOMAIN, "SOA")[0].split()[:3]
    assert (mname, rname) == (f"ns1.{js.DOMAIN}.", f"hostmaster.{js.DOMAIN}.")
    assert int(serial) > 1_700_000_000  # a Unix time: the serial grows with every change of the zone
    assert sorted(rrset(query(knotd, js.DOMAIN, "NS"), js.DOMAIN, "NS")) == [f"ns1.{js.DOMAIN}.", f"ns2.{js.DOMAIN}."]
    for name, want in (
        (js.DOMAIN, set(js.ADDRESSES)),
        (f"ns1.{js.DOMAIN}", set(js.ADDRESSES)),
        (f"ns2.{js.DOMAIN}", set(js.ADDRESSES)),
        (f"a.{js.DOMAIN}", {"192.0.2.10"}),
        (f"b.{js.DOMAIN}", {"198.51.100.11"}),
    ):
        assert set(rrset(query(knotd, name, "A"), name, "A")) == want, name
    missing = query(knotd, f"nothere.{js.DOMAIN}", "A")
    assert missing.rcode() == dns.rcode.NXDOMAIN


def test_apex_a_set_rotates_between_answers(knotd: int):
    orders = {tuple(rrset(query(knotd, js.DOMAIN, "A"), js.DOMAIN, "A")) for _ in range(10)}
    assert orders == {js.ADDRESSES, tuple(reversed(js.ADDRESSES))}


def test_dns_cookies_are_answered_with_a_server_cookie(knotd: int):
    client_cookie = bytes.fromhex("0123456789abcdef")
    cookie = dns.edns.GenericOption(dns.edns.OptionType.COOKIE, client_cookie)
    answer = query(knotd, js.DOMAIN, "SOA", use_edns=0, options=[cookie])
    cookies = [o for o in answer.options if o.otype == dns.edns.OptionType.COOKIE]
    assert len(cookies) == 1
    data = cookies[0].to_wire()
    assert data[:8] == client_cookie and len(data) >= 16  # the client's cookie back, plus a server cookie


def test_a_burst_above_the_rate_limit_gets_slipped_truncated_answers(knotd: int):
    """mod-rrl (slip 2, at TEST_RATE_LIMIT answers/s per flow): 1000 queries in a second or two from one address;
    some answers come back truncated (TC, no records: "retry over TCP"), some not at all."""
    burst, per_round = 1000, 25
    answers: list[dns.message.Message] = []

    def drain(s: socket.socket, wait: float) -> None:
        s.settimeout(wait) if wait else s.setblocking(False)
        while True:
            try:
                answers.append(dns.message.from_wire(s.recv(4096)))
            except (socket.timeout, BlockingIOError):
                return

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.connect(("127.0.0.1", knotd))
        wire = dns.message.make_query(f"a.{js.DOMAIN}", "A").to_wire()
        # Paced at about 1000/s and read between rounds: a socket buffer that overflows would look like limiting.
        for _ in range(burst // per_round):
            for _ in range(per_round):
                s.send(wire)
            time.sleep(0.025)
            drain(s, 0)
        drain(s, 1.0)
    truncated = [a for a in answers if a.flags & dns.flags.TC]
    assert truncated, f"no slipped answer among {len(answers)}"
    assert all(not a.answer for a in truncated)
    assert len(answers) < burst, "every query was answered: none was dropped"
