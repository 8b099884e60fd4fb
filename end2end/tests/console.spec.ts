import { test, expect } from "@playwright/test";
import { spawn } from "node:child_process";
import path from "node:path";

const bin = process.env.FORECOURT_BIN ?? path.resolve(__dirname, "../../target/debug/forecourt");

test("the operator console shows a charger coming online live, without a reload", async ({ page, baseURL }) => {
  await page.goto("/login");
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
  await page.getByLabel("Email").fill("operator@forecourt.local");
  await page.getByLabel("Password").fill("demo-operator-pass");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page).toHaveURL(/\/console$/);
  await expect(page.locator("body")).toHaveAttribute("data-hydrated", "true");
  await expect(page.getByTestId("status-FM-CAM-02")).toHaveText("Offline");
  await page.evaluate(() => ((window as any).__sameDocument = true));

  // A charger connects over real OCPP (our simulator) while the page is open.
  const ws = baseURL!.replace("http", "ws") + "/ocpp";
  const sim = spawn(bin, ["simulate", "--url", ws, "--charger", "FM-CAM-02:1", "--mean-idle", "600", "--duration", "20"], {
    stdio: "ignore",
  });
  try {
    await expect(page.getByTestId("status-FM-CAM-02")).toHaveText("Online", { timeout: 15_000 });
    expect(await page.evaluate(() => (window as any).__sameDocument)).toBe(true);
  } finally {
    sim.kill();
  }
  await expect(page.getByTestId("status-FM-CAM-02")).toHaveText("Offline", { timeout: 15_000 });
});
