"""`make docs`: generate the dbt docs against the warehouse, then serve them."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

from orchestration.core.settings import PROJECT_ROOT, load_settings
from orchestration.core.warehouse import dbt_env
from orchestration.embedded.environment import check_database, warehouse_url

DOCS_PORT = 8080


def _dbt(*args: str, env: dict[str, str], target: Path) -> None:
    dbt = Path(sys.executable).parent / "dbt"
    base = [str(dbt), *args, "--project-dir", str(PROJECT_ROOT), "--profiles-dir", "profiles"]
    # The log file gets no colour codes (a terminal still does): it is read with editors and grep.
    base += ["--target-path", str(target), "--log-path", str(target / "logs")]
    base += ["--no-use-colors-file"]
    subprocess.run(base, check=True, cwd=PROJECT_ROOT, env=env)


def main(argv: list[str] | None = None) -> None:
    """Generates the docs (lineage back to every raw table) and serves them on DOCS_PORT."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--serve", action="store_true", help="serve after generating")
    parser.add_argument("--port", type=int, default=DOCS_PORT)
    parser.add_argument("--target-path", type=Path, default=PROJECT_ROOT / "target")
    args = parser.parse_args(argv)
    target = args.target_path.resolve()
    url = warehouse_url(load_settings())
    check_database(url)
    env = {**os.environ, **dbt_env(url)}
    _dbt("docs", "generate", env=env, target=target)
    print(f"dbt docs generated in {target} (log: {target / 'logs' / 'dbt.log'})")
    if args.serve:
        print(f"serving dbt docs on http://127.0.0.1:{args.port} (Ctrl-C stops)")
        _dbt("docs", "serve", "--port", str(args.port), "--no-browser", env=env, target=target)


if __name__ == "__main__":
    main()
