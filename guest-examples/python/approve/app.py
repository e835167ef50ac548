"""`approve` in Python: asks a person to approve each text before passing it on.

A message asks for input (`{"text": ...}`, kind `approval`); the response
`{"approved": true}` sends the text on as kind `text`, `{"approved": false}` drops it.
"""

from superstep_guest import Executor, export


class Approve(Executor):
    def __init__(self):
        self.state = {"pending": {}, "approved": 0, "rejected": 0}

    def handle(self, ctx, message):
        text = message.json()
        request_id = ctx.request_info("approval", {"text": text})
        self.state["pending"][request_id] = text

    def on_response(self, ctx, request_id, response):
        text = self.state["pending"].pop(request_id)
        if response.json()["approved"]:
            self.state["approved"] += 1
            ctx.send("text", text)
        else:
            self.state["rejected"] += 1
            ctx.log("warn", f"rejected: {text}")


WitWorld = export(Approve)
