import { ReactNode } from 'react';

/**
 * A secret the server returns once (a device token, an API key, a
 * provisioning key, a webhook signing secret): the warning that it cannot be
 * shown again, the secret in a read-only box to copy, anything that goes with
 * it (`children`), and Done to dismiss it. Every such panel of the console is this one.
 */
export function SecretPanel({
  testId,
  title,
  warning,
  secret,
  label,
  valueTestId,
  onClose,
  children,
  attributes,
}: {
  testId: string;
  title?: string;
  warning: ReactNode;
  secret: string;
  /** The box's accessible name. */
  label: string;
  valueTestId?: string;
  onClose?: () => void;
  children?: ReactNode;
  /** Extra data-* attributes of the panel (tests read the device's ids from them). */
  attributes?: Record<`data-${string}`, string>;
}) {
  return (
    <div className="card credential" data-testid={testId} {...attributes}>
      {title && <h2>{title}</h2>}
      <p className="warning">{warning}</p>
      <label>
        {label}
        <textarea readOnly value={secret} rows={Math.min(4, Math.ceil(secret.length / 80) + 1)} aria-label={label} data-testid={valueTestId} />
      </label>
      {children}
      {onClose && (
        <button type="button" onClick={onClose}>
          Done
        </button>
      )}
    </div>
  );
}
