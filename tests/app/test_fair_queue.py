"""The served app shared fairly: an edit made during another user's λ sweep waits for one small chunk, not the sweep,
and twelve clients with distinct edits at once each get their own results."""

from __future__ import annotations

import threading
import time

import time_core.demo as demo

SHAPES = ("circle", "square", "triangle", "star")
COLOURS = ("green", "red", "blue")


def client(url):
    from gradio_client import Client

    return Client(url, verbose=False, download_files=False)


def table(rows):
    return {"headers": list(demo.TEST_HEADERS), "data": rows}


def edit(c, source, destination, tests, lam, seeds=4):
    config = demo.DemoConfig.for_model("toy")
    return c.predict(source, destination, tests, lam, True, True, seeds, 0, config.steps, config.guidance, 64,
                     api_name="/edit")


def test_an_edit_during_a_sweep_takes_at_most_twice_its_idle_time_plus_3_s(app_url):
    tests = table(demo.preset_prompts("shapes:0").table())
    user = client(app_url)
    edit(user, "a circle", "a green circle", tests, "0.5")  # the originals, cached for both users
    idle = []
    for lam in ("0.7", "0.9"):
        start = time.perf_counter()
        edit(user, "a circle", "a green circle", tests, lam)  # 84 new edited images each (21 rows, 4 seeds)
        idle.append(time.perf_counter() - start)
    sweeper, done = client(app_url), {}

    def sweep():
        done["result"] = sweeper.predict("a circle", "a green circle", tests, True, True, -3, 6, 12, 4, 0, None,
                                         None, None, api_name="/sweep")

    thread = threading.Thread(target=sweep)
    thread.start()
    time.sleep(3.0)  # the sweep is running
    start = time.perf_counter()
    *_, status, details, _ = edit(user, "a circle", "a green circle", tests, "1.1")
    busy = time.perf_counter() - start
    sweep_running = thread.is_alive()
    thread.join(600)
    print(f"edit idle {min(idle):.2f} s, during a sweep {busy:.2f} s")
    assert sweep_running, "the sweep ended before the edit: the test measured nothing"
    rows = len(demo.preset_prompts("shapes:0").rows())
    assert details["edit"]["lam"] == 1.1 and len(details["images"]) == rows * 4
    assert busy <= 2 * min(idle) + 3.0, (busy, idle)
    assert "12/12 λ values" in done["result"][3]


def test_twelve_clients_at_once_get_their_own_edits(app_url):
    requests = [(f"a {shape}", f"a {colour} {shape}") for shape in SHAPES for colour in COLOURS]
    results, errors = {}, []

    def run(k):
        try:
            source, destination = requests[k]
            other = "a circle" if source != "a circle" else "a square"
            rows = [["negative", other, f"{destination.split()[1]} {other}"]]
            results[k] = edit(client(app_url), source, destination, table(rows), str(0.05 * (k + 1)), seeds=1)
        except Exception as error:  # reported below
            errors.append((k, error))

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(requests))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(600)
    assert not errors, errors
    assert len(results) == 12
    for k, (source, destination) in enumerate(requests):
        original, edited, _, status, details, _ = results[k]
        assert details["edit"]["sources"] == [source] and details["edit"]["destinations"] == [destination]
        assert abs(details["edit"]["lam"] - 0.05 * (k + 1)) < 1e-12 and f'"{source}" → "{destination}"' in status
        assert [item["prompt"] for item in details["images"]][0] == source and len(edited) == len(original) == 2
