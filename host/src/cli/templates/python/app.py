"""`{{name}}`: counts the words of each text it receives and yields the counts so far."""

from superstep_guest import Executor, export


class Counter(Executor):
    def __init__(self):
        # Saved in every checkpoint (as JSON), restored on resume.
        self.state = {"messages": 0, "words": 0}

    def handle(self, ctx, message):
        text = message.json()
        self.state["messages"] += 1
        self.state["words"] += len(text.split())
        ctx.yield_output("counts", dict(self.state))


WitWorld = export(Counter)
