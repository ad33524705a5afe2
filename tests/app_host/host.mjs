// An MCP Apps host for the browser tests, built as ext-apps' basic-host example builds one: the
// official TypeScript client talks to census-mcp, the view runs in an inner frame of a sandbox proxy
// page on a second origin (whose CSP the test server derives from the resource's `_meta.ui.csp`), and
// host and view speak only through ext-apps' AppBridge over postMessage. tests/test_app_browser.py
// bundles this file with rolldown and drives it through the window.host functions below.
import {
  AppBridge,
  PostMessageTransport,
  RESOURCE_MIME_TYPE,
  SANDBOX_PROXY_READY_METHOD,
  getToolUiResourceUri,
} from "@modelcontextprotocol/ext-apps/app-bridge";
import { Client, StreamableHTTPClientTransport } from "@modelcontextprotocol/client";

const HOST_INFO = { name: "census-mcp test host", version: "1" };
const UI_EXTENSION = "io.modelcontextprotocol/ui";

// What the host saw, for the test to read: the view's messages, model-context updates and
// display-mode requests.
const seen = { messages: [], modelContext: [], displayModes: [] };
let client;
let bridge;
let hostContext = {};

// The stdio bridge's browser half: JSON-RPC messages go to the test through window.stdioSend (which
// writes them to census-mcp's stdin) and come back through window.host.stdioReceive (its stdout).
class StdioBridgeTransport {
  async start() {}
  async send(message) {
    await window.stdioSend(JSON.stringify(message));
  }
  async close() {
    this.onclose?.();
  }
  receive(line) {
    this.onmessage?.(JSON.parse(line));
  }
}

async function connect({ transport, url, token, era }) {
  const options = {
    capabilities: { extensions: { [UI_EXTENSION]: { mimeTypes: [RESOURCE_MIME_TYPE] } } },
  };
  // The client's own default era is 2025-11-25; 2026-07-28 is pinned.
  if (era === "2026-07-28") options.versionNegotiation = { mode: { pin: era } };
  client = new Client(HOST_INFO, options);
  let wire;
  if (transport === "stdio") {
    wire = new StdioBridgeTransport();
    window.host.stdioReceive = (line) => wire.receive(line);
  } else {
    wire = new StreamableHTTPClientTransport(new URL(url), {
      requestInit: { headers: { Authorization: `Bearer ${token}` } },
    });
  }
  await client.connect(wire);
  const { tools } = await client.listTools();
  return { protocolVersion: client.getNegotiatedProtocolVersion?.() ?? null, tools };
}

async function appResource(uri) {
  const { contents } = await client.readResource({ uri });
  if (contents.length !== 1 || contents[0].mimeType !== RESOURCE_MIME_TYPE) {
    throw new Error(`${uri} is not one MCP App document`);
  }
  const [content] = contents;
  return { html: content.text, csp: content._meta?.ui?.csp };
}

function loadSandboxProxy(iframe, proxyUrl, csp) {
  const url = new URL(proxyUrl);
  url.searchParams.set("csp", JSON.stringify(csp ?? {}));
  const ready = new Promise((resolve) => {
    const listener = ({ source, data }) => {
      if (source === iframe.contentWindow && data?.method === SANDBOX_PROXY_READY_METHOD) {
        window.removeEventListener("message", listener);
        resolve();
      }
    };
    window.addEventListener("message", listener);
  });
  iframe.src = url.href;
  return ready;
}

// What the host offers the view; a test takes some away to see the view do without them.
function capabilitiesOf(features) {
  const server = client.getServerCapabilities();
  const capabilities = { serverTools: server?.tools, serverResources: server?.resources, logging: {} };
  if (features.message) capabilities.message = { text: {} };
  if (features.modelContext) capabilities.updateModelContext = { text: {}, structuredContent: {} };
  return capabilities;
}

function showInline(iframe, height) {
  iframe.classList.remove("fullscreen");
  if (height) iframe.style.height = `${height}px`;
}

// Opens the view as a host does after the model called `tool`: the call and the resource read go
// through the client, the result reaches the view once both the view and the result are ready.
async function openApp({ tool: name, arguments: args, proxyUrl, context, features }) {
  const { tools } = await client.listTools();
  const tool = tools.find((candidate) => candidate.name === name);
  const uri = tool && getToolUiResourceUri(tool);
  if (!uri) throw new Error(`${name} shows no app`);
  const result = client.callTool({ name, arguments: args });
  const resource = await appResource(uri);
  const iframe = document.createElement("iframe");
  iframe.title = "Census sources";
  iframe.setAttribute("sandbox", "allow-scripts allow-same-origin allow-forms");
  document.getElementById("slot").replaceChildren(iframe);
  await loadSandboxProxy(iframe, proxyUrl, resource.csp);

  const modes = features.fullscreen ? ["inline", "fullscreen"] : ["inline"];
  hostContext = { displayMode: "inline", availableDisplayModes: modes, ...context, toolInfo: { tool } };
  bridge = new AppBridge(client, HOST_INFO, capabilitiesOf(features), { hostContext });
  bridge.onmessage = async (params) => {
    seen.messages.push(params);
    return {};
  };
  bridge.onupdatemodelcontext = async (params) => {
    seen.modelContext.push(params);
    return {};
  };
  bridge.onrequestdisplaymode = async ({ mode }) => {
    seen.displayModes.push(mode);
    const granted = modes.includes(mode) ? mode : hostContext.displayMode;
    iframe.classList.toggle("fullscreen", granted === "fullscreen");
    await setHostContext({ displayMode: granted });
    return { mode: granted };
  };
  bridge.onsizechange = ({ height }) => {
    if (hostContext.displayMode !== "fullscreen") showInline(iframe, height);
  };
  const initialized = new Promise((resolve) => (bridge.oninitialized = resolve));
  await bridge.connect(new PostMessageTransport(iframe.contentWindow, iframe.contentWindow));
  await bridge.sendSandboxResourceReady({ html: resource.html, csp: resource.csp });
  await initialized;
  await bridge.sendToolInput({ arguments: args });
  await bridge.sendToolResult(await result);
  return { tool };
}

async function setHostContext(changes) {
  hostContext = { ...hostContext, ...changes };
  await bridge.setHostContext(hostContext);
}

window.host = { connect, openApp, setHostContext, seen, stdioReceive: null };
window.hostReady = true;
