import { defineConfig } from "@playwright/test";
import path from "node:path";

// Debian's chromium, never a browser download. The server is the real binary on a fresh SQLite file.
const root = path.resolve(__dirname, "..");
const bin = process.env.FORECOURT_BIN ?? path.join(root, "target/debug/forecourt");
const dataDir = path.join(root, "target/e2e-data");
const port = 3100;

export default defineConfig({
  testDir: "./tests",
  timeout: 30_000,
  fullyParallel: false,
  workers: 1,
  reporter: [["list"]],
  use: {
    baseURL: `http://127.0.0.1:${port}`,
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  webServer: {
    command: `rm -rf '${dataDir}' && '${bin}' serve --addr 127.0.0.1:${port} --data-dir '${dataDir}' --site-root '${path.join(root, "target/site")}' --themes-dir '${path.join(root, "themes")}'`,
    url: `http://127.0.0.1:${port}/readyz`,
    reuseExistingServer: false,
    timeout: 60_000,
    stdout: "ignore",
    stderr: "pipe",
  },
});
