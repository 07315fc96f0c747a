/** Whether process `pid` runs on this host (one of another user's counts: the signal is refused, not missing). */
export function processAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as { code?: string }).code === "EPERM";
  }
}
