import { ChannelCredentials, Client, ClientOptions, ClientReadableStream, status as GrpcCode } from '@grpc/grpc-js';
import { defaultAddress, insecureClient, MeshServiceName, serverStream, unary } from '@iot-mesh/runtime/client';
import { CredentialServiceClient } from '../../gen/ts/iot/device/v1/credential';
import { DeviceServiceClient } from '../../gen/ts/iot/device/v1/device';
import { DeviceTypeServiceClient } from '../../gen/ts/iot/device/v1/device_types';
import { GroupServiceClient } from '../../gen/ts/iot/device/v1/groups';
import { CampaignServiceClient, FirmwareServiceClient } from '../../gen/ts/iot/device/v1/firmware';
import { JobServiceClient } from '../../gen/ts/iot/device/v1/jobs';
import { ProvisioningServiceClient } from '../../gen/ts/iot/device/v1/provisioning';
import { AlertServiceClient } from '../../gen/ts/iot/monitoring/v1/alerts';
import { DeadLetterServiceClient } from '../../gen/ts/iot/monitoring/v1/dead_letters';
import { ExportServiceClient } from '../../gen/ts/iot/monitoring/v1/export';
import { RetentionServiceClient } from '../../gen/ts/iot/monitoring/v1/retention';
import { NotificationChannelServiceClient, RuleServiceClient } from '../../gen/ts/iot/monitoring/v1/rules';
import { TelemetryServiceClient } from '../../gen/ts/iot/monitoring/v1/telemetry';
import { ApiKeyServiceClient } from '../../gen/ts/iot/signing/v1/api_keys';
import { AuthServiceClient } from '../../gen/ts/iot/signing/v1/auth';
import { UserServiceClient } from '../../gen/ts/iot/signing/v1/users';
import { CliError } from './cli-error';
import { readSession, Session, withCredentialsLock, writeSession } from './credentials-store';
import { EXIT } from './exit-codes';
import { OutputFormat } from './output';

/** The options every command inherits from `iotctl` itself. */
export interface GlobalOptions {
  address?: string;
  signing?: string;
  device?: string;
  monitoring?: string;
  apiKey?: string;
  tls?: boolean;
  output: OutputFormat;
  timeout: number;
}

/** Refresh this long before the access token expires, so it does not expire in flight. */
const REFRESH_MARGIN_MS = 30_000;

type UnaryMethod<Req, Res> = Parameters<typeof unary<Client, Req, Res>>[1];
type StreamMethod<Req, Res> = Parameters<typeof serverStream<Client, Req, Res>>[1];
type ClientClass<C extends Client> = new (address: string, credentials: ChannelCredentials, options?: Partial<ClientOptions>) => C;

/**
 * The address of a service: `--<name>`, then `--address` (one edge in front of
 * all three), then `IOTCTL_<NAME>_ADDRESS`, then `IOTCTL_ADDRESS`, then the
 * local default (`defaultAddress`).
 */
export function serviceAddress(name: MeshServiceName, options: Pick<GlobalOptions, MeshServiceName | 'address'>, env = process.env): string {
  return options[name] ?? options.address ?? env[`IOTCTL_${name.toUpperCase()}_ADDRESS`] ?? env.IOTCTL_ADDRESS ?? defaultAddress(name);
}

function expiresSoon(iso: string): boolean {
  return Date.parse(iso) - Date.now() < REFRESH_MARGIN_MS;
}

/** A session from a Login or Refresh response. */
export function sessionOf(tokens: { accessToken: string; accessTokenExpireTime?: Date; refreshToken: string; refreshTokenExpireTime?: Date }, who: Pick<Session, 'tenant' | 'email' | 'userId'>): Session {
  return {
    ...who,
    accessToken: tokens.accessToken,
    accessTokenExpireTime: (tokens.accessTokenExpireTime ?? new Date(0)).toISOString(),
    refreshToken: tokens.refreshToken,
    refreshTokenExpireTime: (tokens.refreshTokenExpireTime ?? new Date(0)).toISOString(),
  };
}

/**
 * The generated clients of one command run, created on first use, and the
 * caller's authorization: `--api-key`/`IOTCTL_API_KEY`, or the stored session
 * of the signing address, refreshed when its access token is (about to be)
 * expired.
 */
export class Connection {
  private readonly clients = new Map<ClientClass<Client>, Client>();
  private refreshed = false;

  constructor(readonly options: GlobalOptions) {}

  /** The signing address, which also keys the stored session. */
  get signingAddress(): string {
    return serviceAddress('signing', this.options);
  }

  private client<C extends Client>(Class: ClientClass<C>, service: MeshServiceName): C {
    let client = this.clients.get(Class as ClientClass<Client>) as C | undefined;
    if (!client) {
      const address = serviceAddress(service, this.options);
      // Production puts TLS in front (the edge); inside the mesh or locally it is plain HTTP/2.
      client = this.options.tls ? new Class(address, ChannelCredentials.createSsl()) : insecureClient(Class, address, { metrics: false });
      this.clients.set(Class as ClientClass<Client>, client);
    }
    return client;
  }

  get auth(): AuthServiceClient {
    return this.client(AuthServiceClient, 'signing');
  }
  get users(): UserServiceClient {
    return this.client(UserServiceClient, 'signing');
  }
  get apiKeys(): ApiKeyServiceClient {
    return this.client(ApiKeyServiceClient, 'signing');
  }
  get devices(): DeviceServiceClient {
    return this.client(DeviceServiceClient, 'device');
  }
  get credentials(): CredentialServiceClient {
    return this.client(CredentialServiceClient, 'device');
  }
  get deviceTypes(): DeviceTypeServiceClient {
    return this.client(DeviceTypeServiceClient, 'device');
  }
  get groups(): GroupServiceClient {
    return this.client(GroupServiceClient, 'device');
  }
  get jobs(): JobServiceClient {
    return this.client(JobServiceClient, 'device');
  }
  get firmware(): FirmwareServiceClient {
    return this.client(FirmwareServiceClient, 'device');
  }
  get campaigns(): CampaignServiceClient {
    return this.client(CampaignServiceClient, 'device');
  }
  get provisioning(): ProvisioningServiceClient {
    return this.client(ProvisioningServiceClient, 'device');
  }
  get telemetry(): TelemetryServiceClient {
    return this.client(TelemetryServiceClient, 'monitoring');
  }
  get alerts(): AlertServiceClient {
    return this.client(AlertServiceClient, 'monitoring');
  }
  get rules(): RuleServiceClient {
    return this.client(RuleServiceClient, 'monitoring');
  }
  get deadLetters(): DeadLetterServiceClient {
    return this.client(DeadLetterServiceClient, 'monitoring');
  }
  get notificationChannels(): NotificationChannelServiceClient {
    return this.client(NotificationChannelServiceClient, 'monitoring');
  }
  get exports(): ExportServiceClient {
    return this.client(ExportServiceClient, 'monitoring');
  }
  get retention(): RetentionServiceClient {
    return this.client(RetentionServiceClient, 'monitoring');
  }

  /** The API key given for this run, if any (`--api-key` beats `IOTCTL_API_KEY`). */
  get apiKey(): string | undefined {
    return this.options.apiKey ?? (process.env.IOTCTL_API_KEY || undefined);
  }

  /** Calls a unary method without credentials (login, refresh). */
  anonymous<C extends Client, Req, Res>(client: C, method: UnaryMethod<Req, Res>, request: Req): Promise<Res> {
    return unary(client, method, request, { deadlineMs: this.options.timeout });
  }

  /** The `authorization` header value of this run. */
  async authorization(): Promise<string> {
    const apiKey = this.apiKey;
    if (apiKey) return `ApiKey ${apiKey}`;
    let session = readSession(this.signingAddress);
    if (!session) throw new CliError(EXIT.unauthenticated, `not logged in to ${this.signingAddress}: run "iotctl login" or pass --api-key`);
    if (expiresSoon(session.accessTokenExpireTime)) session = await this.refresh(session);
    return `Bearer ${session.accessToken}`;
  }

  /**
   * Trades the refresh token for a new pair, under the credentials lock; when
   * another process refreshed meanwhile its fresh tokens are used instead.
   */
  private refresh(stale: Session): Promise<Session> {
    return withCredentialsLock(async () => {
      const current = readSession(this.signingAddress);
      if (!current) throw new CliError(EXIT.unauthenticated, `logged out of ${this.signingAddress}: run "iotctl login"`);
      if (current.accessToken !== stale.accessToken && !expiresSoon(current.accessTokenExpireTime)) return current;
      if (Date.parse(current.refreshTokenExpireTime) <= Date.now()) {
        writeSession(this.signingAddress, undefined);
        throw new CliError(EXIT.unauthenticated, 'the session expired: run "iotctl login" again');
      }
      let res;
      try {
        res = await this.anonymous(this.auth, this.auth.refresh, { refreshToken: current.refreshToken });
      } catch (err) {
        if ((err as { code?: number }).code !== GrpcCode.UNAUTHENTICATED) throw err;
        writeSession(this.signingAddress, undefined);
        throw new CliError(EXIT.unauthenticated, `the session ended (${(err as { details: string }).details}): run "iotctl login" again`);
      }
      const next = sessionOf(res.tokens!, current);
      writeSession(this.signingAddress, next);
      this.refreshed = true;
      return next;
    });
  }

  /**
   * Calls a unary method with the caller's authorization. A session's token
   * refused as UNAUTHENTICATED (its signing key rotated away, clocks apart) is
   * refreshed once and the call repeated.
   */
  async call<C extends Client, Req, Res>(client: C, method: UnaryMethod<Req, Res>, request: Req): Promise<Res> {
    const settings = { authorization: await this.authorization(), deadlineMs: this.options.timeout };
    try {
      return await unary(client, method, request, settings);
    } catch (err) {
      const session = this.apiKey ? undefined : readSession(this.signingAddress);
      if ((err as { code?: number }).code !== GrpcCode.UNAUTHENTICATED || !session || this.refreshed) throw err;
      await this.refresh(session);
      return unary(client, method, request, { ...settings, authorization: await this.authorization() });
    }
  }

  /** Opens a server stream with the caller's authorization and no deadline. */
  async stream<C extends Client, Req, Res>(client: C, method: StreamMethod<Req, Res>, request: Req): Promise<ClientReadableStream<Res>> {
    return serverStream(client, method, request, { authorization: await this.authorization() });
  }

  /** Closes every channel opened by this run. */
  close(): void {
    for (const client of this.clients.values()) client.close();
  }
}
