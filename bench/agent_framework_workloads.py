"""The workloads of bench/WORKLOADS.md on Microsoft Agent Framework, the reference
side of superstep's benchmark (`cargo bench -p superstep --bench workloads`).

    python3 -m venv venv && venv/bin/pip install agent-framework-core==1.23.0
    venv/bin/python bench/agent_framework_workloads.py [w1 w2 w3 w4 w5] [--dir DIR]

Executors are in-process Python objects; checkpoints go to `FileCheckpointStorage` with
an fsync of each file and of its directory added, so that durability matches
superstep's. Each workload checks its final output and reports the median, min and max
over SAMPLES runs (environment variable, default 5).
"""

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from agent_framework import (
    Executor,
    FileCheckpointStorage,
    WorkflowBuilder,
    WorkflowContext,
    handler,
)

SAMPLES = int(os.environ.get("SAMPLES", "5"))


class DurableFileCheckpointStorage(FileCheckpointStorage):
    """FileCheckpointStorage plus an fsync of the new file and of the directory; counts
    the bytes and the time its saves take."""

    saved_bytes = 0
    save_seconds = 0.0

    async def save(self, checkpoint):
        started = time.perf_counter()
        checkpoint_id = await super().save(checkpoint)
        path = Path(self.storage_path) / f"{checkpoint_id}.json"
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        fd = os.open(self.storage_path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        self.save_seconds += time.perf_counter() - started
        self.saved_bytes += path.stat().st_size
        return checkpoint_id


def report(what, unit, values):
    values = sorted(values)
    median = statistics.median(values)
    fmt = (lambda v: f"{v:.0f}") if median >= 100 else (lambda v: f"{v:.2f}")
    print(
        f"{what:<50} {fmt(median):>10} {unit:<12} "
        f"(min {fmt(values[0])}, max {fmt(values[-1])}, n={len(values)})",
        flush=True,
    )


def storage(base, name):
    path = Path(tempfile.mkdtemp(prefix=name, dir=base))
    return DurableFileCheckpointStorage(path)


def check(result, expected):
    outputs = result.get_outputs()
    if outputs != [expected]:
        raise SystemExit(f"output {outputs!r}, expected {expected!r}: no figure")


# W1: upper -> reverse -> lower -> finalize.


class TextStep(Executor):
    def __init__(self, id, transform):
        super().__init__(id=id)
        self.transform = transform
        self.state = {"count": 0, "last_input": None, "last_output": None}

    @handler
    async def handle(self, text: str, ctx: WorkflowContext[str]) -> None:
        result = self.transform(text)
        self.state.update(count=self.state["count"] + 1, last_input=text, last_output=result)
        if self.id == "upper":
            ctx.set_state("original_input", text)
            ctx.set_state("upper_output", result)
        if self.id == "lower":
            assert ctx.get_state("original_input") is not None
            assert ctx.get_state("upper_output") is not None
        await ctx.send_message(result)

    async def on_checkpoint_save(self):
        return dict(self.state)

    async def on_checkpoint_restore(self, state):
        self.state = dict(state)


class Finalize(Executor):
    def __init__(self):
        super().__init__(id="finalize")
        self.state = {"count": 0, "last_output": None, "final": False}

    @handler
    async def handle(self, text: str, ctx: WorkflowContext[None, str]) -> None:
        self.state.update(count=self.state["count"] + 1, last_output=text, final=True)
        await ctx.yield_output(text)

    async def on_checkpoint_save(self):
        return dict(self.state)

    async def on_checkpoint_restore(self, state):
        self.state = dict(state)


def pipeline(checkpoints):
    upper = TextStep("upper", str.upper)
    reverse = TextStep("reverse", lambda t: t[::-1])
    lower = TextStep("lower", str.lower)
    finalize = Finalize()
    return (
        WorkflowBuilder(name="pipeline", start_executor=upper, checkpoint_storage=checkpoints)
        .add_chain([upper, reverse, lower, finalize])
        .build()
    )


async def w1(base):
    rates = []
    for _ in range(SAMPLES):
        checkpoints = storage(base, "w1-")
        started = time.perf_counter()
        for _ in range(200):
            check(await pipeline(checkpoints).run("hello world"), "dlrow olleh")
        rates.append(200 / (time.perf_counter() - started))
    report("W1 pipeline, durable", "runs/s", rates)


# W2: a token around 8 stations for 2,000 supersteps.


class Station(Executor):
    def __init__(self, index):
        super().__init__(id=f"n{index}")
        self.seen = 0

    @handler
    async def handle(self, token: dict, ctx: WorkflowContext[dict, dict]) -> None:
        self.seen += 1
        token = {"hops": token["hops"] + 1}
        if token["hops"] == 2000:
            await ctx.yield_output(token)
        else:
            await ctx.send_message(token)

    async def on_checkpoint_save(self):
        return {"seen": self.seen}

    async def on_checkpoint_restore(self, state):
        self.seen = state["seen"]


def ring(checkpoints):
    stations = [Station(i) for i in range(8)]
    builder = WorkflowBuilder(
        max_iterations=2001, start_executor=stations[0], checkpoint_storage=checkpoints
    )
    for i, station in enumerate(stations):
        builder.add_edge(station, stations[(i + 1) % 8])
    return builder.build()


async def w2(base):
    for label, durable in [("durable checkpoint per superstep", True), ("checkpointing off", False)]:
        rates = []
        for _ in range(SAMPLES):
            workflow = ring(storage(base, "w2-") if durable else None)
            started = time.perf_counter()
            check(await workflow.run({"hops": 0}), {"hops": 2000})
            rates.append(2000 / (time.perf_counter() - started))
        report(f"W2 ring, {label}", "supersteps/s", rates)


# W3: dispatch -> 64 workers -> gather, 50 rounds.


class Dispatch(Executor):
    def __init__(self):
        super().__init__(id="dispatch")

    @handler
    async def handle(self, round: int, ctx: WorkflowContext[list]) -> None:
        await ctx.send_message(list(range(round * 1000, round * 1000 + 1000)))


class Worker(Executor):
    @handler
    async def handle(self, numbers: list, ctx: WorkflowContext[int]) -> None:
        await ctx.send_message(sum(numbers))


class Gather(Executor):
    def __init__(self):
        super().__init__(id="gather")
        self.state = {"round": 0, "sums": 0, "total": 0}

    @handler
    async def handle(self, partial: int, ctx: WorkflowContext[int, int]) -> None:
        self.state["sums"] += 1
        self.state["total"] += partial
        if self.state["sums"] == 64:
            self.state["sums"] = 0
            self.state["round"] += 1
            if self.state["round"] == 50:
                await ctx.yield_output(self.state["total"])
            else:
                await ctx.send_message(self.state["round"])

    async def on_checkpoint_save(self):
        return dict(self.state)

    async def on_checkpoint_restore(self, state):
        self.state = dict(state)


def fan_out(checkpoints):
    dispatch, gather = Dispatch(), Gather()
    workers = [Worker(id=f"worker-{w:02}") for w in range(64)]
    builder = WorkflowBuilder(
        max_iterations=200, start_executor=dispatch, checkpoint_storage=checkpoints
    )
    builder.add_fan_out_edges(dispatch, workers)
    for worker in workers:
        builder.add_edge(worker, gather)
    builder.add_edge(gather, dispatch)
    return builder.build()


async def w3(base):
    expected = sum(sum(range(r * 1000, r * 1000 + 1000)) for r in range(50)) * 64
    # Messages routed: per round 64 lists, 64 sums and one round message; plus the input.
    routed = 50 * (64 + 64 + 1)
    rates = []
    for _ in range(SAMPLES):
        workflow = fan_out(storage(base, "w3-"))
        started = time.perf_counter()
        check(await workflow.run(0), expected)
        rates.append(routed / (time.perf_counter() - started))
    report("W3 fan-out/fan-in, durable", "messages/s", rates)


# W4: 8 executors with 8 MiB of state each, one superstep, one checkpoint.


class BigState(Executor):
    def __init__(self, index):
        super().__init__(id=f"big{index}")
        self.state = random.Random(index).randbytes(8 << 20)

    @handler
    async def handle(self, tick: int, ctx: WorkflowContext[None, int]) -> None:
        self.state = bytes([self.state[0] ^ 1]) + self.state[1:]
        await ctx.yield_output(tick)

    async def on_checkpoint_save(self):
        return {"state": self.state}

    async def on_checkpoint_restore(self, state):
        self.state = state["state"]


class Start(Executor):
    @handler
    async def handle(self, tick: int, ctx: WorkflowContext[int]) -> None:
        await ctx.send_message(tick)


async def w4(base):
    rates, raw = [], []
    for _ in range(SAMPLES):
        checkpoints = storage(base, "w4-")
        start, bigs = Start(id="start"), [BigState(i) for i in range(8)]
        workflow = (
            WorkflowBuilder(start_executor=start, checkpoint_storage=checkpoints, output_from=[bigs[0]])
            .add_fan_out_edges(start, bigs)
            .build()
        )
        await workflow.run(1)
        rates.append(checkpoints.saved_bytes / (1 << 20) / checkpoints.save_seconds)
        data = random.Random(0).randbytes(64 << 20)
        path = Path(checkpoints.storage_path) / "raw"
        started = time.perf_counter()
        with open(path, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        raw.append(64 / (time.perf_counter() - started))
    report("W4 big state, checkpoint saves", "MiB/s", rates)
    report("W4 raw write+fsync of 64 MiB", "MiB/s", raw)


# W5: process start to the first superstep after resuming W1 from its second checkpoint.


async def w5_child(directory, checkpoint_id):
    checkpoints = DurableFileCheckpointStorage(directory)
    started = time.perf_counter()
    async for event in pipeline(checkpoints).run(
        checkpoint_id=checkpoint_id, checkpoint_storage=checkpoints, stream=True
    ):
        if event.type == "superstep_completed":
            print("first superstep", flush=True)
            break
    return started


async def w5(base):
    checkpoints = storage(base, "w5-")
    check(await pipeline(checkpoints).run("hello world"), "dlrow olleh")
    listed = sorted(await checkpoints.list_checkpoints(workflow_name="pipeline"), key=lambda c: c.timestamp)
    second = listed[1].checkpoint_id
    times = []
    for _ in range(SAMPLES):
        started = time.perf_counter()
        child = subprocess.run(
            [sys.executable, __file__, "--w5-child", str(checkpoints.storage_path), second],
            capture_output=True,
            text=True,
            check=True,
        )
        if "first superstep" not in child.stdout:
            raise SystemExit(f"the resumed run completed no superstep: {child.stderr}")
        times.append((time.perf_counter() - started) * 1e3)
    report("W5 resume to first superstep (process start)", "ms", times)


async def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("workloads", nargs="*", default=["w1", "w2", "w3", "w4", "w5"])
    parser.add_argument("--dir", default=tempfile.gettempdir())
    parser.add_argument("--w5-child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.w5_child:
        await w5_child(*args.w5_child)
        return
    import agent_framework

    print(f"Agent Framework {agent_framework.__version__}, {SAMPLES} samples per figure")
    base = tempfile.mkdtemp(prefix="af-bench-", dir=args.dir)
    for name in args.workloads:
        await globals()[name](base)


if __name__ == "__main__":
    asyncio.run(main())
