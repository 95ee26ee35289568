import { Pool } from '@iot-mesh/runtime';
import { CommandOutcome, CommandRecord, JsonObject } from '../domain/model';
import { optionalDate, Row } from './device-store';

/** Persistence of commands and their outcomes. */
export interface CommandStore {
  insertCommand(command: Omit<CommandRecord, 'seq' | 'createTime'>): Promise<CommandRecord>;
  completeCommand(id: string, status: CommandOutcome, result: JsonObject | undefined, error: string): Promise<CommandRecord>;
  /** Newest first; `beforeSeq` continues a previous page. */
  listCommands(tenantId: string, deviceId: string, beforeSeq: string | undefined, limit: number): Promise<CommandRecord[]>;
}

const COMMAND_COLUMNS = 'id, tenant_id, device_id, seq, name, payload, status, result, error, actor_id, create_time, complete_time';

function toCommand(row: Row): CommandRecord {
  return {
    id: row.id,
    tenantId: row.tenant_id,
    deviceId: row.device_id,
    seq: String(row.seq),
    name: row.name,
    payload: row.payload ?? undefined,
    status: row.status,
    result: row.result ?? undefined,
    error: row.error,
    actorId: row.actor_id,
    createTime: row.create_time,
    completeTime: optionalDate(row.complete_time),
  };
}

/** The PostgreSQL implementation (schema `device`). */
export class PgCommandStore implements CommandStore {
  constructor(private readonly pool: Pool) {}

  async insertCommand(command: Omit<CommandRecord, 'seq' | 'createTime'>): Promise<CommandRecord> {
    const { rows } = await this.pool.query(
      `INSERT INTO commands (id, tenant_id, device_id, name, payload, status, result, error, actor_id, complete_time)
       VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7::jsonb, $8, $9, $10) RETURNING ${COMMAND_COLUMNS}`,
      [
        command.id, command.tenantId, command.deviceId, command.name, command.payload ? JSON.stringify(command.payload) : null,
        command.status, command.result ? JSON.stringify(command.result) : null, command.error, command.actorId, command.completeTime ?? null,
      ],
    );
    return toCommand(rows[0]);
  }

  async completeCommand(id: string, status: CommandOutcome, result: JsonObject | undefined, error: string): Promise<CommandRecord> {
    const { rows } = await this.pool.query(
      `UPDATE commands SET status = $2, result = $3::jsonb, error = $4, complete_time = now() WHERE id = $1 RETURNING ${COMMAND_COLUMNS}`,
      [id, status, result ? JSON.stringify(result) : null, error],
    );
    return toCommand(rows[0]);
  }

  async listCommands(tenantId: string, deviceId: string, beforeSeq: string | undefined, limit: number): Promise<CommandRecord[]> {
    const { rows } = await this.pool.query(
      `SELECT ${COMMAND_COLUMNS} FROM commands WHERE tenant_id = $1 AND device_id = $2 AND ($3::bigint IS NULL OR seq < $3::bigint) ORDER BY seq DESC LIMIT $4`,
      [tenantId, deviceId, beforeSeq ?? null, limit],
    );
    return rows.map(toCommand);
  }
}
