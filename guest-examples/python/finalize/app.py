"""`finalize` in Python: yields the text as the workflow's output."""

from superstep_guest import Executor, export


class Finalize(Executor):
    def __init__(self):
        self.state = {"count": 0, "last_output": None, "final": False}

    def handle(self, ctx, message):
        text = message.json()
        self.state["count"] += 1
        ctx.yield_output("text", text)
        self.state["last_output"] = text
        self.state["final"] = True


WitWorld = export(Finalize)
