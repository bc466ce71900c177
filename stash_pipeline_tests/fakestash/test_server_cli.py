"""``stash-pipeline fake-stash`` serves a generated library until interrupted."""

import signal
import subprocess
import sys

import httpx


def test_fake_stash_command_serves_and_stops_on_ctrl_c() -> None:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "stash_pipeline.cli",
            "fake-stash",
            "--port",
            "0",
            "--scenes",
            "30",
            "--images",
            "40",
            "--tz",
            "+11:00",
            "--api-key",
            "k",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        url = None
        for _ in range(10):
            line = proc.stdout.readline()
            if line.startswith("STASH_URL="):
                url = line.strip().split("=", 1)[1]
                break
        assert url is not None
        assert url.startswith("http://127.0.0.1:")
        assert httpx.get(url + "/healthz").text == "."
        assert httpx.post(url + "/graphql", json={"query": "{ stats { scene_count } }"}).status_code == 401
        response = httpx.post(
            url + "/graphql",
            json={
                "query": '{ stats { scene_count image_count } findScenes(filter: {per_page: 1, sort: "id"}) { scenes { updated_at } } }'
            },
            headers={"ApiKey": "k"},
        )
        data = response.json()["data"]
        assert data["stats"] == {"scene_count": 30, "image_count": 40}
        assert data["findScenes"]["scenes"][0]["updated_at"].endswith("+11:00")
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=10) == 0
        assert "stopping" in proc.stdout.read()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
