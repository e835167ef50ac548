// `approve` in JavaScript: asks a person to approve each text before passing it on.
//
// A message asks for input (`{"text": ...}`, kind `approval`); the response
// `{"approved": true}` sends the text on as kind `text`, `{"approved": false}` drops it.
import { exportExecutor } from "superstep-guest";

class Approve {
  state = { pending: {}, approved: 0, rejected: 0 };

  handle(ctx, message) {
    const text = message.json();
    const requestId = ctx.requestInfo("approval", { text });
    this.state.pending[requestId] = text;
  }

  onResponse(ctx, requestId, response) {
    const text = this.state.pending[requestId];
    delete this.state.pending[requestId];
    if (response.json().approved) {
      this.state.approved += 1;
      ctx.send("text", text);
    } else {
      this.state.rejected += 1;
      ctx.log("warn", `rejected: ${text}`);
    }
  }
}

export const { init, handle, onResponse, snapshot, restore } = exportExecutor(Approve);
