"""`python -m progresscast token` in a real subprocess."""

import os
import subprocess
import sys

import pytest

from progresscast.tokens import verify_token

SECRET = "c" * 48


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
