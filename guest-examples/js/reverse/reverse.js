// `reverse` in JavaScript: reverses the text. Its state has the same JSON shape as the
// Rust `reverse`'s.
import { exportExecutor } from "superstep-guest";

class Reverse {
  state = { count: 0, last_input: null, last_output: null };

  handle(ctx, message) {
    const text = message.json();
    const result = [...text].reverse().join("");
    this.state.count += 1;
    ctx.send("text", result);
    this.state.last_input = text;
    this.state.last_output = result;
  }
}

export const { init, handle, onResponse, snapshot, restore } = exportExecutor(Reverse);
