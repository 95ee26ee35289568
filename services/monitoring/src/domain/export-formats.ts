import { stringify } from 'csv-stringify/sync';
import type { SchemaElement } from 'hyparquet' with { 'resolution-mode': 'import' };

// hyparquet-writer ships only ES modules; Node 20.19+ (and tsx) load them with require.
type ParquetWriterModule = typeof import('hyparquet-writer', { with: { 'resolution-mode': 'import' } });
// eslint-disable-next-line @typescript-eslint/no-require-imports
const { ByteWriter, ParquetWriter } = require('hyparquet-writer') as ParquetWriterModule;

/** A cell of an exported row: absent values are null. */
export type ExportCell = Date | string | number | boolean | null;

/** The column kinds an export file has. */
export type ColumnKind = 'time' | 'string' | 'double' | 'int64' | 'bool';

/** One column of an export: its name in every format and its kind. */
export interface ExportColumn {
  name: string;
  kind: ColumnKind;
  /** Never null (Parquet REQUIRED). */
  required?: boolean;
}

/** Where encoded bytes go; resolves when the receiver can take more (backpressure). */
export type ChunkSink = (chunk: Uint8Array) => Promise<void>;

/** Encodes rows into one file, handing bytes to the sink as they fill a chunk. */
export interface FileEncoder {
  /** Adds a batch of rows (batches keep the per-row cost to a loop step, not a promise). */
  add(rows: ExportCell[][]): Promise<void>;
  /** Writes what is buffered and the file's trailer. */
  end(): Promise<void>;
}

/** The file formats an export writes. */
export type FileFormat = 'csv' | 'ndjson' | 'parquet';

/** Media type and file extension of each format. */
export const FORMAT_FILES: Record<FileFormat, { contentType: string; extension: string }> = {
  csv: { contentType: 'text/csv; charset=utf-8', extension: 'csv' },
  ndjson: { contentType: 'application/x-ndjson', extension: 'ndjson' },
  parquet: { contentType: 'application/vnd.apache.parquet', extension: 'parquet' },
};

/** Text chunks are sent at about this size: few messages, little memory. */
const TEXT_CHUNK_BYTES = 64 * 1024;
/** Rows per Parquet row group: one group is the most an export holds in memory… */
export const PARQUET_ROW_GROUP = 50_000;
/** …or fewer when long strings would make a group larger than about this. */
const PARQUET_GROUP_BYTES = 16 * 1024 * 1024;
/** Parquet bytes leave in messages of at most this size (gRPC's default limit is 4 MiB). */
const PARQUET_MESSAGE_BYTES = 1024 * 1024;

/** Encoders of line formats: each row becomes text, sent once a chunk has filled. */
class LineEncoder implements FileEncoder {
  private parts: string[] = [];
  private size = 0;

  constructor(
    private readonly sink: ChunkSink,
    private readonly line: (row: ExportCell[]) => string,
    header?: string,
  ) {
    if (header) this.push(header);
  }

  private push(text: string): void {
    this.parts.push(text);
    this.size += text.length;
  }

  async add(rows: ExportCell[][]): Promise<void> {
    for (const row of rows) {
      this.push(this.line(row));
      if (this.size >= TEXT_CHUNK_BYTES) await this.flush();
    }
  }

  private async flush(): Promise<void> {
    if (this.parts.length === 0) return;
    const chunk = Buffer.from(this.parts.join(''), 'utf8');
    this.parts = [];
    this.size = 0;
    await this.sink(chunk);
  }

  end(): Promise<void> {
    return this.flush();
  }
}

/** csv-stringify writes booleans as 1 and ''; an export spells them out like the other formats. */
function csvCell(cell: ExportCell): string | number {
  if (cell === null) return '';
  if (typeof cell === 'boolean') return String(cell);
  return cell instanceof Date ? cell.toISOString() : cell;
}

function csvEncoder(columns: ExportColumn[], sink: ChunkSink): FileEncoder {
  return new LineEncoder(sink, (row) => stringify([row.map(csvCell)]), stringify([columns.map((c) => c.name)]));
}

function ndjsonEncoder(columns: ExportColumn[], sink: ChunkSink): FileEncoder {
  return new LineEncoder(sink, (row) => {
    const object: Record<string, ExportCell> = {};
    // Absent values are left out; non-finite numbers (JSON has none) too.
    row.forEach((cell, i) => {
      if (cell !== null && !(typeof cell === 'number' && !Number.isFinite(cell))) object[columns[i].name] = cell instanceof Date ? cell.toISOString() : cell;
    });
    return JSON.stringify(object) + '\n';
  });
}

function parquetElement(column: ExportColumn): SchemaElement {
  const repetition_type = column.required ? 'REQUIRED' : 'OPTIONAL';
  switch (column.kind) {
    case 'time':
      return { name: column.name, type: 'INT64', repetition_type, logical_type: { type: 'TIMESTAMP', isAdjustedToUTC: true, unit: 'MILLIS' } };
    case 'string':
      return { name: column.name, type: 'BYTE_ARRAY', repetition_type, converted_type: 'UTF8' };
    case 'double':
      return { name: column.name, type: 'DOUBLE', repetition_type };
    case 'int64':
      return { name: column.name, type: 'INT64', repetition_type };
    case 'bool':
      return { name: column.name, type: 'BOOLEAN', repetition_type };
  }
}

/**
 * hyparquet-writer's byte writer, emptied after every row group (the writer
 * calls flush then and awaits it) and at the end: the file leaves in row-group
 * chunks and the buffer is reused, never holding more than one group.
 */
class ChunkedByteWriter extends ByteWriter {
  constructor(private readonly sink: ChunkSink) {
    super(1 << 20);
  }

  async flush(): Promise<void> {
    const length = this.index;
    this.index = 0;
    // Copied out: the buffer is written over by the next group.
    for (let at = 0; at < length; at += PARQUET_MESSAGE_BYTES) await this.sink(new Uint8Array(this.buffer.slice(at, Math.min(length, at + PARQUET_MESSAGE_BYTES))));
  }

  override finish(): Promise<void> {
    return this.flush();
  }
}

class ParquetEncoder implements FileEncoder {
  private readonly writer: InstanceType<typeof ParquetWriter>;
  private columnsData: unknown[][];
  private groupBytes = 0;

  constructor(
    private readonly columns: ExportColumn[],
    sink: ChunkSink,
  ) {
    const schema: SchemaElement[] = [{ name: 'root', num_children: columns.length }, ...columns.map(parquetElement)];
    this.writer = new ParquetWriter({ writer: new ChunkedByteWriter(sink), schema, createdBy: 'iot-mesh monitoring export' });
    this.columnsData = columns.map(() => []);
  }

  async add(rows: ExportCell[][]): Promise<void> {
    for (const row of rows) {
      for (let i = 0; i < row.length; i++) {
        const cell = row[i];
        this.columnsData[i].push(this.columns[i].kind === 'int64' && typeof cell === 'number' ? BigInt(cell) : cell);
        this.groupBytes += typeof cell === 'string' ? cell.length : 8;
      }
      if (this.columnsData[0].length >= PARQUET_ROW_GROUP || this.groupBytes >= PARQUET_GROUP_BYTES) await this.writeGroup();
    }
  }

  private async writeGroup(): Promise<void> {
    const rows = this.columnsData[0].length;
    if (rows === 0) return;
    const columnData = this.columns.map((c, i) => ({ name: c.name, data: this.columnsData[i] }));
    this.columnsData = this.columns.map(() => []);
    this.groupBytes = 0;
    await this.writer.write({ columnData, rowGroupSize: rows });
  }

  async end(): Promise<void> {
    await this.writeGroup();
    await this.writer.finish();
  }
}

/** An encoder of `format` for rows of `columns`, writing to `sink`. */
export function fileEncoder(format: FileFormat, columns: ExportColumn[], sink: ChunkSink): FileEncoder {
  if (format === 'csv') return csvEncoder(columns, sink);
  if (format === 'ndjson') return ndjsonEncoder(columns, sink);
  return new ParquetEncoder(columns, sink);
}
