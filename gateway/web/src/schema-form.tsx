import type { JsonObject, JsonValue } from '@bufbuild/protobuf';
import { pretty } from './format';

type Schema = { type?: string | string[]; enum?: JsonValue[]; title?: string; description?: string; minimum?: number; maximum?: number };

function parse(text: string): JsonObject | undefined {
  try {
    const value = JSON.parse(text) as JsonValue;
    return value !== null && typeof value === 'object' && !Array.isArray(value) ? value : undefined;
  } catch {
    return undefined;
  }
}

/**
 * One field per top-level property of a JSON Schema whose type is a string,
 * number, integer, boolean or enum; the JSON text stays the value (edited in
 * place, so properties the form cannot show survive and the raw editor stays
 * usable). Nothing is drawn when the schema has no such property.
 */
export function SchemaFields({ schema, text, onChange, disabled, testId }: { schema: JsonObject | undefined; text: string; onChange: (text: string) => void; disabled?: boolean; testId?: string }) {
  const properties = (schema?.properties ?? {}) as Record<string, Schema>;
  const required = new Set((schema?.required as string[] | undefined) ?? []);
  const simple = Object.entries(properties).filter(([, p]) => p.enum || ['string', 'number', 'integer', 'boolean'].includes(String(p.type)));
  const value = parse(text);
  if (simple.length === 0 || !value) return null;
  const set = (name: string, v: JsonValue | undefined) => {
    const next = { ...value };
    if (v === undefined) delete next[name];
    else next[name] = v;
    onChange(pretty(next));
  };
  return (
    <div className="inline-form" data-testid={testId}>
      {simple.map(([name, p]) => {
        const label = `${p.title ?? name}${required.has(name) ? ' *' : ''}`;
        const current = value[name];
        if (p.enum) {
          return (
            <label key={name} title={p.description}>
              {label}
              <select name={`field-${name}`} disabled={disabled} value={current === undefined ? '' : JSON.stringify(current)} onChange={(e) => set(name, e.target.value === '' ? undefined : (JSON.parse(e.target.value) as JsonValue))}>
                <option value="">—</option>
                {p.enum.map((option) => (
                  <option key={JSON.stringify(option)} value={JSON.stringify(option)}>
                    {String(option)}
                  </option>
                ))}
              </select>
            </label>
          );
        }
        if (p.type === 'boolean') {
          return (
            <label key={name} className="checkbox" title={p.description}>
              <input type="checkbox" name={`field-${name}`} disabled={disabled} checked={current === true} onChange={(e) => set(name, e.target.checked)} /> {label}
            </label>
          );
        }
        const numeric = p.type === 'number' || p.type === 'integer';
        return (
          <label key={name} title={p.description}>
            {label}
            <input
              name={`field-${name}`}
              type={numeric ? 'number' : 'text'}
              step={p.type === 'integer' ? 1 : 'any'}
              min={p.minimum}
              max={p.maximum}
              disabled={disabled}
              value={current === undefined || current === null ? '' : String(current)}
              onChange={(e) => set(name, e.target.value === '' ? undefined : numeric ? Number(e.target.value) : e.target.value)}
            />
          </label>
        );
      })}
    </div>
  );
}
