/** Prints rows (the first one the header) as columns padded to their widest cell. */
export function printTable(lines: string[][]): void {
  const width = lines[0]!.map((_, i) => Math.max(...lines.map((l) => l[i]!.length)));
  for (const l of lines) console.log(l.map((c, i) => c.padEnd(width[i]!)).join("  ").trimEnd());
}
