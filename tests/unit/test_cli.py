"""`python -m progresscast token` in a real subprocess."""

import os
import secrets
import subprocess
import sys

import pytest

from progresscast.tokens import demo_secret_path, verify_token

SECRET = "c" * 48


@pytest.fixture(autouse=True)
def instance(tmp_path, monkeypatch):
    """Every run looks for a demo secret in an empty instance folder of its own,
    never in the checkout's (where `make run` may have left one)."""
    folder = tmp_path / "instance"
    monkeypatch.setenv("PROGRESSCAST_INSTANCE_PATH", str(folder))
    return folder


def run(*args, secret=SECRET):
    env = {k: v for k, v in os.environ.items() if k != "PROGRESSCAST_SECRET_KEY"}
    if secret:
        env["PROGRESSCAST_SECRET_KEY"] = secret
    return subprocess.run(
        [sys.executable, "-m", "progresscast", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )


def test_token_is_printed_alone_on_the_last_line():
    out = run("token", "alice", "--admin", "--jobs", "j1,j2", "--ttl", "120")
    assert out.returncode == 0, out.stderr
    token = out.stdout.strip().splitlines()[-1]
    claims = verify_token(SECRET, token)
    assert claims.sub == "alice" and claims.admin and claims.jobs == {"j1", "j2"}


def test_service_token():
    out = run("token", "importer", "--service")
    assert verify_token(SECRET, out.stdout.splitlines()[-1]).service


@pytest.mark.parametrize(
    ("args", "secret", "message"),
    [
        (("token", "alice"), None, "PROGRESSCAST_SECRET_KEY"),
        (("token", "alice"), "short", "at least"),
        (("token", "bad user"), SECRET, "invalid user id"),
        (("token", "alice", "--ttl", "0"), SECRET, "ttl"),
    ],
)
def test_errors_exit_non_zero_with_a_message(args, secret, message):
    out = run(*args, secret=secret)
    assert out.returncode == 2 and message in out.stderr and out.stdout == ""


def demo_secret(instance, secret=None):
    """A demo server's secret file, as web/demo.py writes it."""
    instance.mkdir()
    path = demo_secret_path(instance)
    with open(path, "w") as f:
        f.write(secret or secrets.token_urlsafe(48))
    os.chmod(path, 0o600)
    return path


def test_without_a_secret_it_signs_with_the_demo_servers_and_says_so(instance):
    path = demo_secret(instance)
    out = run("token", "alice", secret=None)
    assert out.returncode == 0, out.stderr
    with open(path) as f:
        claims = verify_token(f.read().strip(), out.stdout.splitlines()[-1])
    assert claims.sub == "alice"
    assert (
        f"PROGRESSCAST_SECRET_KEY is not set: signed with the demo server's secret from {path}"
        in (out.stderr)
    )


def test_the_secret_in_the_environment_wins_over_the_demo_secret(instance):
    demo_secret(instance)
    out = run("token", "alice")
    assert verify_token(SECRET, out.stdout.splitlines()[-1]).sub == "alice"
    assert "demo" not in out.stderr


def test_without_any_secret_it_refuses_and_makes_none_up(instance):
    out = run("token", "alice", secret=None)
    assert out.returncode == 2 and out.stdout == ""
    assert "set PROGRESSCAST_SECRET_KEY" in out.stderr
    assert f"no demo server secret in {demo_secret_path(instance)}" in out.stderr
    assert not instance.exists()  # nothing written: only a demo server makes a secret up


def test_a_weak_demo_secret_is_refused(instance):
    path = demo_secret(instance, "short")
    out = run("token", "alice", secret=None)
    assert out.returncode == 2 and out.stdout == ""
    assert f"cannot use the demo secret in {path}" in out.stderr and "at least" in out.stderr
