// The browser playground's engine, in a Web Worker so the page never freezes: run.c (fp32, model
// versions 0 and 1) or runq.c (int8, version 2) compiled to WebAssembly with web.c's entry points,
// chosen by the model file's header. Messages from the page:
//   {type: "generate", model: "demo" | "demo-instruct" | {model: File, tokenizer: File}, prompt, instruct,
//    temperature, topp, seed, steps}   (instruct: the prompt is an instruction, ./run -m instruct)
//   {type: "stop"}
// Messages to the page: {type: "status", text}, {type: "text", text} (the story, streamed),
// {type: "done", tokens, seconds, promptTokens}, {type: "error", message}.
importScripts("run.js", "runq.js");

const V1_MAGIC = 0x616b3432;
const DEMOS = {
  "demo": { model: "stories_demo.bin", tokenizer: "tok_demo.bin" },
  "demo-instruct": { model: "stories_demo_instruct.bin", tokenizer: "tok_demo_instruct.bin" },
};
let engine = null;   // {module, name, source}: the module instance and the model loaded into it
let stopRequested = false;
let busy = false;

// Each runner's .wasm is compiled once per worker (both start compiling when the page opens) and
// every model gets a new instance of it. Instances share the compiled code, so what V8 optimized
// during one story stays optimized: it first runs wasm from a quick baseline compile and
// recompiles the functions that run hot with its optimizing compiler, in the background.
const compiled = {};
function compileRunner(name) {
  if (!compiled[name]) {
    const file = `${name}.wasm`;
    compiled[name] = WebAssembly.compileStreaming(fetch(file))
      .catch(async () => { // a host that does not serve .wasm as application/wasm
        const r = await fetch(file);
        if (!r.ok) throw new Error(`cannot fetch ${file}: HTTP ${r.status}`);
        return WebAssembly.compile(await r.arrayBuffer());
      })
      .catch((e) => { delete compiled[name]; throw e; }); // the next Generate tries again
  }
  return compiled[name];
}
for (const name of ["run", "runq"]) compileRunner(name).catch(() => {}); // reported when used

// The module instance for a runner, its stdout read byte by byte (the printer writes whole
// UTF-8 characters) and its stderr kept, so die()'s message can be shown.
async function instantiate(name) {
  const bytes = [], err = [];
  const wasm = await compileRunner(name);
  let failed;
  const failure = new Promise((resolve, reject) => { failed = reject; });
  const module = await Promise.race([failure, (name === "runq" ? createRunq : createRun)({
    instantiateWasm: (imports, receive) => {
      WebAssembly.instantiate(wasm, imports).then((instance) => receive(instance, wasm), failed);
      return {};
    },
    preRun: [(m) => m.FS.init(null, (b) => { if (b !== null) bytes.push(b); }, (b) => { if (b !== null) err.push(b); })],
    print: () => {}, printErr: () => {},
  })]);
  module.stdoutBytes = bytes;
  module.stderrBytes = err;
  return module;
}

// "error: ..." lines die() wrote; the exception's text when it is not an exit (out of memory, a bug).
function errorMessage(module, e) {
  if (module) {
    const text = new TextDecoder().decode(new Uint8Array(module.stderrBytes)).trim();
    const lines = text.split("\n").filter((l) => l.startsWith("error: "));
    if (lines.length) return lines[lines.length - 1].slice(7);
  }
  return e && e.message ? e.message : String(e);
}

async function readBytes(source, which) {
  if (typeof source === "string") {
    const r = await fetch(DEMOS[source][which]);
    if (!r.ok) throw new Error(`cannot fetch ${DEMOS[source][which]}: HTTP ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  }
  return new Uint8Array(await source[which].arrayBuffer());
}

// Version 2 (int8) goes to runq, anything else to run, whose header check names what is wrong.
function runnerFor(model) {
  if (model.length < 8) return "run";
  const view = new DataView(model.buffer, model.byteOffset, 8);
  return view.getUint32(0, true) === V1_MAGIC && view.getInt32(4, true) === 2 ? "runq" : "run";
}

// The same model again (the demo, or the same picked files: new File objects each message) keeps
// its instance, so a second story starts at once.
const sourceKey = (source) => typeof source === "string" ? source :
  [source.model, source.tokenizer].map((f) => `${f.name}\u0000${f.size}\u0000${f.lastModified}`).join("\u0000");

async function load(source) {
  if (engine && engine.key === sourceKey(source)) return engine.module;
  postMessage({ type: "status", text: "loading" });
  const model = await readBytes(source, "model"), tokenizer = await readBytes(source, "tokenizer");
  const name = runnerFor(model);
  engine = null;
  const module = await instantiate(name);
  const modelName = typeof source === "string" ? DEMOS[source].model : source.model.name;
  const tokName = typeof source === "string" ? DEMOS[source].tokenizer : source.tokenizer.name;
  // the file names appear in die()'s messages
  const dir = "/" + Date.now();
  module.FS.mkdir(dir);
  const modelPath = `${dir}/${modelName.replace(/\//g, "_")}`, tokPath = `${dir}/${tokName.replace(/\//g, "_")}`;
  module.FS.writeFile(modelPath, model);
  module.FS.writeFile(tokPath, tokenizer);
  try {
    module.ccall("web_load", "number", ["string", "string"], [modelPath, tokPath]);
  } catch (e) {
    throw Object.assign(new Error(errorMessage(module, e)), { reported: true });
  }
  // the model now lives in the module's memory (mmap copied it); drop the file copies
  module.FS.unlink(modelPath);
  module.FS.unlink(tokPath);
  engine = { module, name, key: sourceKey(source) };
  return module;
}

// Lets queued messages (stop) through: a message to ourselves, because a worker's nested
// setTimeout(0) waits at least 4 ms, an eighth of each 30 ms slice.
const channel = new MessageChannel();
const tick = () => new Promise((resolve) => { channel.port1.onmessage = resolve; channel.port2.postMessage(null); });

async function generate(msg) {
  busy = true;
  stopRequested = false;
  let module = null;
  const decoder = new TextDecoder();
  const flush = () => {
    const out = module.stdoutBytes;
    if (out.length) {
      postMessage({ type: "text", text: decoder.decode(new Uint8Array(out), { stream: true }) });
      out.length = 0;
    }
  };
  try {
    module = await load(msg.model);
    module.stdoutBytes.length = 0;
    postMessage({ type: "status", text: "running" });
    module.ccall("web_start", null, ["string", "number", "number", "number", "number", "number"],
                 [msg.prompt, msg.temperature, msg.topp, msg.seed, msg.steps, msg.instruct ? 1 : 0]);
    const t0 = performance.now();
    let last = t0;
    // the loop yields every 30 ms so the stop message and the streamed text get through
    while (module._web_next()) {
      if (performance.now() - last > 30) {
        flush();
        await tick();
        last = performance.now();
        if (stopRequested) break;
      }
    }
    const seconds = (performance.now() - t0) / 1000;
    const tokens = module._web_end();
    // web_end printed nothing more; ./run's final newline is the CLI's
    flush();
    postMessage({ type: "done", tokens, seconds, promptTokens: module._web_prompt_tokens(), runner: engine.name,
                  stopped: stopRequested });
  } catch (e) {
    const message = e.reported ? e.message : errorMessage(module, e);
    engine = null; // a failed instance is not reused
    postMessage({ type: "error", message });
  } finally {
    busy = false;
  }
}

onmessage = (ev) => {
  const msg = ev.data;
  if (msg.type === "stop") stopRequested = true;
  else if (msg.type === "generate" && !busy) generate(msg);
};
