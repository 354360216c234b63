/**
 * What every `dray <command>` shares about its command line: `--help` (or `-h`) prints the
 * command's own usage, and a mistake on the command line is told in one line naming the command.
 */
import { UsageError } from "../errors.ts";

/** Prints `usage` and returns true when `args` ask for help; the command then does nothing else. */
export function helpRequested(args: string[], usage: string): boolean {
  // Help wins over any other mistake on the line, but what follows `--` is an argument, not a flag.
  const end = args.indexOf("--");
  const flags = end === -1 ? args : args.slice(0, end);
  if (!flags.some((a) => a === "--help" || a === "-h")) return false;
  console.log(usage);
  return true;
}

/**
 * The one-line message for a mistake on the command line, or undefined for any other error.
 * node:util's parseArgs errors (`ERR_PARSE_ARGS_*`) run to several sentences, and the advice in the
 * later ones (quote a positional after `--`) rarely fits dray's commands: the first says it.
 */
export function usageProblem(error: unknown): string | undefined {
  if (error instanceof UsageError) return error.message;
  if (!String((error as { code?: unknown } | null)?.code).startsWith("ERR_PARSE_ARGS_")) return undefined;
  const first = String((error as Error).message).split(/\.\s|\n/)[0]!.replace(/\.$/, "");
  const missing = /^Option '(.+?)(?: <value>)?' argument (missing|is ambiguous)/.exec(first);
  // Ambiguous: the next word starts with a dash, a negative number say, which parseArgs takes for a flag.
  if (missing?.[2] === "is ambiguous") return `option '${missing[1]}' needs a value; one starting with '-' goes as '${missing[1]}=<value>'`;
  if (missing) return `option '${missing[1]}' needs a value`;
  return first.charAt(0).toLowerCase() + first.slice(1);
}

/** What `parseArgs({ tokens: true })` says of one option on the line. */
interface OptionToken {
  kind: string;
  name?: string;
  index: number;
  inlineValue?: boolean | undefined;
  value?: string | undefined;
}

/**
 * `args` less the options named in `names` and their values (`--flag v` and `--flag=v` alike), found
 * by the tokens of the parse that read `args`, so that a value equal to a flag's name stays.
 */
export function argsWithout(args: string[], tokens: readonly OptionToken[], names: readonly string[]): string[] {
  const drop = new Set<number>();
  for (const t of tokens) {
    if (t.kind !== "option" || !names.includes(t.name!)) continue;
    drop.add(t.index);
    if (t.value !== undefined && t.inlineValue === false) drop.add(t.index + 1);
  }
  return args.filter((_, i) => !drop.has(i));
}
