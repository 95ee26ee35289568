/**
 * A table's header row from its column titles (an empty title heads a column
 * of buttons), so every console table spells its head the same way.
 */
export function TableHead({ columns }: { columns: string[] }) {
  return (
    <thead>
      <tr>
        {columns.map((title, i) => (title ? <th key={i}>{title}</th> : <th key={i} />))}
      </tr>
    </thead>
  );
}
