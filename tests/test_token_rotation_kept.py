"""A rotated client token stays rotated: the store keeps its digest (never its value), so a
restart does not bring the old value back; a new value written into orderdesk.toml since wins.
"""

from __future__ import annotations

from pathlib import Path

import trio

from supervision.service import open_service
from supervision.settings import load_settings
from tests.fixtures_service import ADMIN, TOKENS, api, write_config


async def _status(path: Path, token: str, account: str = "primary") -> int:
    async with open_service(load_settings(str(path), environ={})) as running:
        async with api(running, token) as http:
            return (await http.get(f"/accounts/{account}/orders")).status_code


async def test_a_rotation_outlives_a_restart_until_the_file_gives_a_new_value(
    tmp_path: Path,
) -> None:
    path = write_config(tmp_path)
    with trio.fail_after(60):
        async with open_service(load_settings(str(path), environ={})) as running:
            async with api(running, ADMIN) as admin:
                rotated = await admin.put("/admin/accounts/primary/tokens/primary-desk")
            assert rotated.status_code == 200, rotated.text
            new = rotated.json()["token"]
            async with api(running) as http:  # refused at once on this node
                assert (await http.get("/accounts/primary/orders")).status_code == 401
        # Restarted on the same store: the rotation stands.
        assert await _status(path, TOKENS["primary"]) == 401
        assert await _status(path, new) == 200
        assert await _status(path, TOKENS["secondary"], "secondary") == 200  # untouched
        # The operator writes a new value into the file: the file wins over the rotation.
        path.write_text(path.read_text().replace(TOKENS["primary"], "primary-from-the-file"))
        assert await _status(path, "primary-from-the-file") == 200
        assert await _status(path, new) == 401
