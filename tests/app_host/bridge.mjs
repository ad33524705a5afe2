// The host side of MCP Apps, from the ext-apps release package.json pins; tests/test_app_browser.py
// bundles it for the browser with rolldown.
export { AppBridge, PostMessageTransport } from "@modelcontextprotocol/ext-apps/app-bridge";
