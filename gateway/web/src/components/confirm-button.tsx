import { ReactNode, useState } from 'react';

/**
 * A destructive button that asks first: the first press shows "<question>
 * Confirm / Cancel" in place (keyboard reachable, announced as an alert
 * dialog), only Confirm runs `onConfirm`. Every delete in the console uses it.
 */
export function ConfirmButton({ label, question, onConfirm, testId }: { label: ReactNode; question: string; onConfirm: () => void | Promise<void>; testId?: string }) {
  const [asking, setAsking] = useState(false);
  if (!asking)
    return (
      <button type="button" className="danger" data-testid={testId} onClick={() => setAsking(true)}>
        {label}
      </button>
    );
  return (
    <span role="alertdialog" aria-label={question} className="confirm">
      {question}{' '}
      <button
        type="button"
        className="danger"
        autoFocus
        onClick={() => {
          setAsking(false);
          void onConfirm();
        }}
      >
        Confirm
      </button>{' '}
      <button type="button" className="secondary" onClick={() => setAsking(false)}>
        Cancel
      </button>
    </span>
  );
}
