/**
 * What the two child processes of the events benchmark (`events-relay-process.ts`,
 * `events-consumer.ts`) share: their settings from the parent's environment and the answers to
 * the parent's profiling commands, so each profile covers the pipeline phase alone.
 */
import { writeFileSync } from "node:fs";
import { Session } from "node:inspector/promises";

/**
 * What the parent tells a child about profiling: start a CPU profile of this process, or stop
 * it and write it to `file`.
 */
export type ProfileCommand = { kind: "profile-start" } | { kind: "profile-stop"; file: string };

/** A child's answer to a {@link ProfileCommand}; `profile-failed` carries the reason. */
export type ProfileAnswer =
  | { kind: "profiling" }
  | { kind: "profiled" }
  | { kind: "profile-failed"; reason: string };

/** The value of a setting the parent passes in the environment. */
export function required(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (this process is started by events.js)`);
  return value;
}

/** Whether `message` is a {@link ProfileCommand}. */
export function isProfileCommand(message: { kind: string }): message is ProfileCommand {
  return message.kind === "profile-start" || message.kind === "profile-stop";
}

/** Creates the profiler of a child: each command is answered, a failure too. */
export function createChildProfiler(
  send: (answer: ProfileAnswer) => void,
): (command: ProfileCommand) => void {
  let profiler: Session | undefined;
  const run = async (command: ProfileCommand) => {
    if (command.kind === "profile-start") {
      if (profiler) throw new Error("a profile is already running");
      profiler = new Session();
      profiler.connect();
      await profiler.post("Profiler.enable");
      await profiler.post("Profiler.start");
      send({ kind: "profiling" });
      return;
    }
    if (!profiler) throw new Error("no profile is running");
    const { profile } = await profiler.post("Profiler.stop");
    writeFileSync(command.file, JSON.stringify(profile));
    profiler.disconnect();
    profiler = undefined;
    send({ kind: "profiled" });
  };
  return (command) => {
    run(command).catch((err: unknown) => send({ kind: "profile-failed", reason: String(err) }));
  };
}
