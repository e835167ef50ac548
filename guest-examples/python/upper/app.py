"""`upper` in Python: upper-cases the text and publishes the input and the result as
shared state. Its state has the same JSON shape as the Rust `upper`'s."""

from superstep_guest import Executor, export


class Upper(Executor):
    def __init__(self):
        self.state = {"count": 0, "last_input": None, "last_output": None}

    def handle(self, ctx, message):
        text = message.json()
        result = text.upper()
        self.state["count"] += 1
        ctx.set_shared("original_input", text)
        ctx.set_shared("upper_output", result)
        ctx.send("text", result)
        self.state["last_input"] = text
        self.state["last_output"] = result


WitWorld = export(Upper)
