/**
 * `google.api.http` path templates (google/api/http.proto):
 *
 *     Template = "/" Segments [ Verb ] ;
 *     Segments = Segment { "/" Segment } ;
 *     Segment  = "*" | "**" | LITERAL | Variable ;
 *     Variable = "{" FieldPath [ "=" Segments ] "}" ;
 *     Verb     = ":" LITERAL ;
 */

/** A variable of a template: which request field it fills. */
export interface TemplateVariable {
  /** Dotted proto field names: `device.id`. */
  fieldPath: string[];
  /** True when it may span several segments (`**`): its value keeps its slashes. */
  multiSegment: boolean;
}

/** A compiled path template. */
export interface PathTemplate {
  /** The template as written in the proto. */
  source: string;
  variables: TemplateVariable[];
  /** Number of literal segments, used to try more specific templates first. */
  literalCount: number;
  verb: string | undefined;
  /** The whole-path regular expression as text, in the subset JavaScript and RE2 (Envoy's `safe_regex`) share. */
  pattern: string;
  regex: RegExp;
}

/** Variable values found in a matched path, in template order. */
export type PathBindings = Array<{ variable: TemplateVariable; value: string }>;

const LITERAL = /^[A-Za-z0-9._~!$&'()+,;=@%-]+$/;

function escapeRegex(text: string): string {
  return text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function segmentsRegex(segments: string[], source: string): { regex: string; literals: number; multi: boolean } {
  let literals = 0;
  let multi = false;
  const parts = segments.map((segment) => {
    if (segment === '*') return '[^/]+';
    if (segment === '**') {
      multi = true;
      return '.+';
    }
    if (!LITERAL.test(segment)) throw new Error(`path template ${source}: bad segment ${JSON.stringify(segment)}`);
    literals += 1;
    return escapeRegex(segment);
  });
  return { regex: parts.join('/'), literals, multi };
}

/** Splits on `/` outside `{…}`. */
function splitTopLevel(text: string): string[] {
  const out: string[] = [];
  let depth = 0;
  let current = '';
  for (const ch of text) {
    if (ch === '{') depth += 1;
    if (ch === '}') depth -= 1;
    if (ch === '/' && depth === 0) {
      out.push(current);
      current = '';
    } else current += ch;
  }
  out.push(current);
  return out;
}

/** Parses a template; throws on syntax it does not support, naming the template. */
export function compilePathTemplate(source: string): PathTemplate {
  if (!source.startsWith('/')) throw new Error(`path template ${source}: must start with /`);
  let body = source.slice(1);
  let verb: string | undefined;
  const lastSlash = body.lastIndexOf('/');
  const lastColon = body.lastIndexOf(':');
  if (lastColon > lastSlash && !body.slice(lastColon).includes('}')) {
    verb = body.slice(lastColon + 1);
    body = body.slice(0, lastColon);
  }
  const variables: TemplateVariable[] = [];
  let literalCount = 0;
  const parts = splitTopLevel(body).map((segment) => {
    const variable = /^\{([A-Za-z_][A-Za-z0-9_.]*)(?:=(.+))?\}$/.exec(segment);
    if (!variable) {
      const compiled = segmentsRegex([segment], source);
      literalCount += compiled.literals;
      return compiled.regex;
    }
    const compiled = segmentsRegex(variable[2] ? variable[2].split('/') : ['*'], source);
    literalCount += compiled.literals;
    variables.push({ fieldPath: variable[1].split('.'), multiSegment: compiled.multi });
    return `(${compiled.regex})`;
  });
  const verbRegex = verb === undefined ? '' : `:${escapeRegex(verb)}`;
  const pattern = `^/${parts.join('/')}${verbRegex}$`;
  return { source, variables, literalCount, verb, pattern, regex: new RegExp(pattern) };
}

/**
 * Matches a URL path (without query) against a template. Single-segment
 * values are percent-decoded; multi-segment ones keep `%2F` as is, as the
 * HTTP rule specification says.
 */
export function matchPathTemplate(template: PathTemplate, urlPath: string): PathBindings | undefined {
  const match = template.regex.exec(urlPath);
  if (!match) return undefined;
  const bindings: PathBindings = [];
  for (const [i, variable] of template.variables.entries()) {
    const raw = match[i + 1];
    let value: string;
    try {
      value = variable.multiSegment ? raw.split(/%2F/i).map(decodeURIComponent).join('%2F') : decodeURIComponent(raw);
    } catch {
      return undefined;
    }
    bindings.push({ variable, value });
  }
  return bindings;
}
