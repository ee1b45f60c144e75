"""The control case of the bad-input suite: the same commands with good values exit 0 and print
what they did, so every refusal in this folder is about the bad value and nothing else."""

from __future__ import annotations

from tests.cli.helpers import run_cli


def test_sync_then_build_succeed_and_say_what_they_did(emulator, database_url: str) -> None:
    env = {"DATABASE_URL": database_url, "STRIPE_API_KEY": emulator.test_key,
           "STRIPE_API_BASE": emulator.url}  # fmt: skip
    synced = run_cli("sync", env=env)
    assert synced.code == 0, synced.stderr
    assert "Traceback" not in synced.stderr
    assert "backfill" in synced.stdout
    built = run_cli("build", "--as-of", "2026-11-20T12:00:00Z", env=env, timeout=300)
    assert built.code == 0, built.stderr
    assert "Traceback" not in built.stderr
    assert "models" in built.stdout
