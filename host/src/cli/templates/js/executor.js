// `{{name}}`: counts the words of each text it receives and yields the counts so far.
import { exportExecutor } from "superstep-guest";

class Counter {
  // Saved in every checkpoint (as JSON), restored on resume.
  state = { messages: 0, words: 0 };

  handle(ctx, message) {
    const text = message.json();
    this.state.messages += 1;
    this.state.words += text.split(/\s+/).filter(Boolean).length;
    ctx.yieldOutput("counts", { ...this.state });
  }
}

export const { init, handle, onResponse, snapshot, restore } = exportExecutor(Counter);
