import { MailroomError } from './errors.js';
import { toExecutor, type Queryable } from './executor.js';
import { quoteIdentifier } from './identifiers.js';

/** A part of mailroom that connects to PostgreSQL, each best with a login role of its own. */
export type MailroomComponent = 'producer' | 'relay' | 'consumer' | 'sink' | 'operator';

/** Every component, in the order the grants script and the docs list them. */
export const MAILROOM_COMPONENTS: readonly MailroomComponent[] = ['producer', 'relay', 'consumer', 'sink', 'operator'];

/**
 * A part of a component that only some deployments use, with grants of its own: `ordering` (a
 * consumer with `ordering` or `partitions`: parked keys behind a dead letter), `saga` (a consumer
 * that runs `@mailroom/saga` steps and `cleanupSagas`; an operator that runs `mailroom saga
 * cleanup`), `archive` (a relay with `archive: true`).
 */
export type GrantFeature = 'ordering' | 'saga' | 'archive';

/** Every feature, in the order the grants script and the docs list them. */
export const GRANT_FEATURES: readonly GrantFeature[] = ['ordering', 'saga', 'archive'];

/** Which features a component uses: each one set adds its grants to the required ones. Default: none. */
export type GrantFeatures = Partial<Record<GrantFeature, boolean>>;

/** A privilege on one of mailroom's tables. */
export type TablePrivilege = 'SELECT' | 'INSERT' | 'UPDATE' | 'DELETE';

/** What a component needs on one table, and which of its statements need it. */
export interface TableGrant {
  /** The table, in the schema of mailroom's tables. */
  table: string;
  /** The privileges, each needed by some statement of the component. */
  privileges: readonly TablePrivilege[];
  /** The statements that need them (for the docs and the error of {@link assertGrants}). */
  why: string;
  /** Needed only when the component uses this feature; absent: always needed. */
  feature?: GrantFeature;
}

/**
 * Exactly what each component needs on mailroom's tables, besides USAGE on the schema: the one
 * source the grants script, {@link assertGrants}, the README and the least-privilege test use.
 * A grant with a `feature` is needed only by a component that uses it (see {@link componentGrants}).
 *
 * Nothing else needs a grant: identity columns need no sequence privilege; `pg_notify`, LISTEN,
 * the advisory locks (enqueue's key locks, the relay's partition leases) and reading `pg_locks`
 * are open to every role; `idle_session_timeout`, `idle_in_transaction_session_timeout` and
 * `lock_timeout` are settings any role may set for its own session or transaction.
 */
export const COMPONENT_GRANTS: Readonly<Record<MailroomComponent, readonly TableGrant[]>> = {
  producer: [
    { table: 'outbox', privileges: ['INSERT'], why: '`enqueue` inserts the events of the transaction it joins' },
    {
      table: 'outbox_scheduled',
      privileges: ['SELECT', 'INSERT', 'DELETE'],
      why: '`enqueue` with `deliverAt`/`delay` inserts there (its trigger reads the earliest due time); `cancelScheduled` deletes by message id',
    },
  ],
  relay: [
    {
      table: 'outbox',
      privileges: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
      why: 'claims due rows (`SELECT … FOR UPDATE` needs UPDATE as well), pushes failed rows back, deletes settled rows; the backlog gauge counts rows; moves scheduled rows in (INSERT)',
    },
    {
      table: 'outbox_scheduled',
      privileges: ['SELECT', 'UPDATE', 'DELETE'],
      why: 'locks the due scheduled rows (`FOR UPDATE`) and deletes them as it moves them into the outbox; the scheduled gauge counts rows',
    },
    {
      table: 'dead_letters',
      privileges: ['SELECT', 'INSERT', 'UPDATE'],
      why: 'moves rows that can never be published there (an upsert by source and message id: `INSERT … ON CONFLICT DO UPDATE` needs all three)',
    },
    {
      table: 'outbox_archive',
      privileges: ['INSERT'],
      why: 'with `archive: true`, writes each published row there in the statement that deletes it from the outbox',
      feature: 'archive',
    },
  ],
  consumer: [
    {
      table: 'inbox',
      privileges: ['SELECT', 'INSERT', 'DELETE'],
      why: 'the dedupe insert of each delivery; retention cleanup deletes expired rows (its WHERE reads them)',
    },
    {
      table: 'inbox_consumers',
      privileges: ['SELECT', 'INSERT', 'UPDATE'],
      why: '`start()` records the queue and the retention window (an upsert by consumer name)',
    },
    { table: 'secrets', privileges: ['SELECT'], why: 'reads the envelope seal key, to seal retry copies and check the ones that come back' },
    {
      table: 'parked_keys',
      privileges: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
      why: 'with ordering, parks the key of a keyed dead letter (an upsert), reads the parks of its queue, and lifts one once its released messages are handled',
      feature: 'ordering',
    },
    {
      table: 'parked_messages',
      privileges: ['SELECT', 'INSERT', 'UPDATE'],
      why: 'with ordering, records each message parked behind a head (an upsert by source and message id) and reads whether any still waits when a park is lifted',
      feature: 'ordering',
    },
    {
      table: 'sagas',
      privileges: ['SELECT', 'INSERT', 'UPDATE', 'DELETE'],
      why: 'saga steps lock their instance (`SELECT … FOR UPDATE` needs UPDATE as well), create and update it; `cleanupSagas` deletes ended instances',
      feature: 'saga',
    },
    {
      table: 'saga_history',
      privileges: ['SELECT', 'INSERT', 'DELETE'],
      why: 'saga steps check whether a message was applied and record each one; `cleanupSagas` deletes the history of ended instances',
      feature: 'saga',
    },
  ],
  sink: [
    {
      table: 'dead_letters',
      privileges: ['SELECT', 'INSERT', 'UPDATE'],
      why: 'stores each dead letter (an upsert by source and message id)',
    },
    { table: 'secrets', privileges: ['SELECT'], why: 'reads the envelope seal key, to tell a genuine dead letter from a forged one' },
  ],
  operator: [
    {
      table: 'dead_letters',
      privileges: ['SELECT', 'UPDATE', 'DELETE'],
      why: '`dlq list`, `show`, `groups`; `replay` locks the rows and marks them replayed; `discard` deletes them',
    },
    {
      table: 'outbox',
      privileges: ['SELECT', 'INSERT'],
      why: '`replay` skips messages still waiting in the outbox and enqueues the others',
    },
    { table: 'inbox_consumers', privileges: ['SELECT'], why: "`replay` checks each message's age against the shortest inbox retention window" },
    {
      table: 'parked_keys',
      privileges: ['SELECT', 'UPDATE', 'DELETE'],
      why: '`replay` and `discard` of a head release the parked messages (lock the park, mark it releasing, or lift it when nothing waits)',
    },
    {
      table: 'parked_messages',
      privileges: ['SELECT', 'UPDATE'],
      why: '`list`/`show` say which head a parked message waits behind; a release marks them released',
    },
    {
      table: 'dead_letter_actions',
      privileges: ['SELECT', 'INSERT'],
      why: '`replay` and `discard` record who did what in the same transaction; `actions` lists the record',
    },
    { table: 'sagas', privileges: ['SELECT'], why: '`saga list` and `saga show` read the instances' },
    { table: 'saga_history', privileges: ['SELECT'], why: '`saga show` reads the history of an instance' },
    {
      table: 'sagas',
      privileges: ['UPDATE', 'DELETE'],
      why: '`saga cleanup` locks ended instances (`FOR UPDATE SKIP LOCKED` needs UPDATE) and deletes them',
      feature: 'saga',
    },
    { table: 'saga_history', privileges: ['DELETE'], why: '`saga cleanup` deletes the history of the instances it removes', feature: 'saga' },
    {
      table: 'outbox_archive',
      privileges: ['SELECT'],
      why: '`history list`, `show` and `replay` read the archive (`history prune` creates and drops partitions: the owner of the tables runs it)',
    },
  ],
};

/**
 * What `component` needs with `features`: its required grants, then those of each feature it
 * uses, in {@link COMPONENT_GRANTS} order. Unknown features are refused.
 */
export function componentGrants(component: MailroomComponent, features: GrantFeatures = {}): TableGrant[] {
  const grants = COMPONENT_GRANTS[component] as readonly TableGrant[] | undefined;
  if (grants === undefined) throw new MailroomError('INVALID_CONFIG', `Unknown component ${JSON.stringify(component)}: use ${MAILROOM_COMPONENTS.join(', ')}.`);
  const unknown = Object.keys(features).filter((k) => !(GRANT_FEATURES as readonly string[]).includes(k));
  if (unknown.length > 0) {
    throw new MailroomError('INVALID_CONFIG', `Unknown feature ${unknown.map((k) => JSON.stringify(k)).join(', ')}: use ${GRANT_FEATURES.join(', ')}.`);
  }
  return grants.filter((g) => g.feature === undefined || features[g.feature] === true);
}

/** A login role per component; one role may serve several components (it gets the union of their grants). */
export type GrantRoles = Partial<Record<MailroomComponent, string>>;

// Roles are quoted as given, so a name may have upper case, `-` or `.`; `"` and anything else that
// could end the quoting are refused. `pg_` names are PostgreSQL's own roles.
const ROLE_NAME = /^[A-Za-z_][A-Za-z0-9_.-]{0,62}$/;
const RESERVED_ROLES = new Set(['public', 'none', 'current_user', 'session_user', 'current_role']);

/**
 * Validates a role name given to {@link grantsScript} and returns it double-quoted. Quoting keeps
 * the name as given: a role created without quotes has a lower-case name. `PUBLIC` and
 * PostgreSQL's own `pg_*` roles are refused: mailroom's rights go to the roles that need them.
 */
export function quoteRoleName(role: string): string {
  if (typeof role !== 'string' || !ROLE_NAME.test(role) || RESERVED_ROLES.has(role.toLowerCase()) || role.toLowerCase().startsWith('pg_')) {
    throw new MailroomError(
      'INVALID_IDENTIFIER',
      `Invalid role name ${JSON.stringify(role)}: use 1 to 63 letters, digits, "_", "-" or ".", starting with a letter or "_" (not PUBLIC, not a pg_ role).`,
      { details: { role } },
    );
  }
  return `"${role}"`;
}

const PRIVILEGE_ORDER: readonly TablePrivilege[] = ['SELECT', 'INSERT', 'UPDATE', 'DELETE'];

/**
 * The GRANT statements that give each role exactly what its components need in `schema` with
 * `features` (default: none, the required grants only): USAGE on the schema and the table
 * privileges of {@link componentGrants}. Run it as the owner of
 * mailroom's tables (the role that ran `migrate`) after `migrate`, and again after any migrate
 * that adds a table; GRANT is idempotent. It only grants: revoke what a role had before yourself.
 *
 * ```ts
 * await pool.query(grantsScript('mailroom', { producer: 'app', relay: 'mailroom_relay', consumer: 'app' }));
 * ```
 */
export function grantsScript(schema: string, roles: GrantRoles, features: GrantFeatures = {}): string {
  const quotedSchema = quoteIdentifier(schema);
  const unknown = Object.keys(roles).filter((k) => !(MAILROOM_COMPONENTS as readonly string[]).includes(k));
  if (unknown.length > 0) {
    throw new MailroomError('INVALID_CONFIG', `Unknown component ${unknown.map((k) => JSON.stringify(k)).join(', ')}: use ${MAILROOM_COMPONENTS.join(', ')}.`);
  }
  // Per role, the components it serves and the union of their privileges per table.
  const byRole = new Map<string, { components: MailroomComponent[]; tables: Map<string, Set<TablePrivilege>> }>();
  for (const component of MAILROOM_COMPONENTS) {
    const role = roles[component];
    if (role === undefined) continue;
    const quoted = quoteRoleName(role);
    let entry = byRole.get(quoted);
    if (entry === undefined) {
      entry = { components: [], tables: new Map() };
      byRole.set(quoted, entry);
    }
    entry.components.push(component);
    for (const grant of componentGrants(component, features)) {
      const privileges = entry.tables.get(grant.table) ?? new Set<TablePrivilege>();
      for (const p of grant.privileges) privileges.add(p);
      entry.tables.set(grant.table, privileges);
    }
  }
  if (byRole.size === 0) {
    throw new MailroomError('INVALID_CONFIG', `Give a role for at least one component (${MAILROOM_COMPONENTS.join(', ')}).`);
  }
  const used = GRANT_FEATURES.filter((f) => features[f] === true);
  const lines = [
    `-- mailroom: what each component's role needs in schema ${quotedSchema}, with ${used.length === 0 ? 'no optional feature' : `the features ${used.join(', ')}`}.`,
    '-- Run as the owner of the tables (the role that ran `mailroom migrate`), again after each migrate that adds a table.',
  ];
  for (const [role, { components, tables }] of byRole) {
    lines.push('', `-- ${components.join(', ')}`, `GRANT USAGE ON SCHEMA ${quotedSchema} TO ${role};`);
    for (const [table, privileges] of tables) {
      const list = PRIVILEGE_ORDER.filter((p) => privileges.has(p)).join(', ');
      lines.push(`GRANT ${list} ON ${quotedSchema}.${quoteIdentifier(table, 'table name')} TO ${role};`);
    }
  }
  return `${lines.join('\n')}\n`;
}

/** A privilege the connected role lacks, or an object that is not there. */
export interface MissingGrant {
  /** `schema "<name>"` for the schema, else the table as `"<schema>".<table>`. */
  object: string;
  /** The privilege the role lacks, or `missing` when the object does not exist (migrate first). */
  privilege: TablePrivilege | 'USAGE' | 'missing';
}

/**
 * What the role of this connection lacks in `schema` to run `component` with `features` (default:
 * none: the required grants only; see {@link componentGrants}), from PostgreSQL's own
 * privilege functions (privileges through role membership count; a column-level grant counts for
 * SELECT, INSERT and UPDATE). Empty when nothing is missing. Catalogs, functions, operators and
 * types are schema-qualified, so a hostile `search_path` changes nothing.
 */
export async function missingGrants(db: Queryable, schema: string, component: MailroomComponent, features: GrantFeatures = {}): Promise<MissingGrant[]> {
  const quotedSchema = quoteIdentifier(schema);
  const grants = componentGrants(component, features);
  const tables: string[] = [];
  const privileges: string[] = [];
  const byColumn: boolean[] = [];
  for (const grant of grants) {
    for (const p of grant.privileges) {
      tables.push(grant.table);
      privileges.push(p);
      byColumn.push(p !== 'DELETE');
    }
  }
  const executor = toExecutor(db);
  const found = await executor.query<{ present: boolean; usage: boolean | null }>(
    `SELECT n.oid IS NOT NULL AS present, pg_catalog.has_schema_privilege(n.oid, 'USAGE') AS usage
       FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) $1::pg_catalog.name`,
    [schema],
  );
  if (found.rows[0]?.present !== true) return [{ object: `schema "${schema}"`, privilege: 'missing' }];
  const missing: MissingGrant[] = found.rows[0].usage === true ? [] : [{ object: `schema "${schema}"`, privilege: 'USAGE' }];
  const result = await executor.query<{ tbl: string; priv: TablePrivilege; present: boolean; granted: boolean | null }>(
    `SELECT g.tbl, g.priv, c.oid IS NOT NULL AS present,
            CASE WHEN g.by_column THEN pg_catalog.has_any_column_privilege(c.oid, g.priv)
                 ELSE pg_catalog.has_table_privilege(c.oid, g.priv) END AS granted
       FROM ROWS FROM (pg_catalog.unnest($2::pg_catalog.text[]), pg_catalog.unnest($3::pg_catalog.text[]), pg_catalog.unnest($4::pg_catalog.bool[]))
              WITH ORDINALITY AS g(tbl, priv, by_column, ord)
       LEFT JOIN pg_catalog.pg_namespace n ON n.nspname OPERATOR(pg_catalog.=) $1::pg_catalog.name
       LEFT JOIN pg_catalog.pg_class c
         ON c.relnamespace OPERATOR(pg_catalog.=) n.oid AND c.relname OPERATOR(pg_catalog.=) g.tbl::pg_catalog.name
      ORDER BY g.ord`,
    [schema, tables, privileges, byColumn],
  );
  const absent = new Set<string>();
  for (const row of result.rows) {
    const object = `${quotedSchema}.${row.tbl}`;
    if (!row.present) {
      if (!absent.has(object)) missing.push({ object, privilege: 'missing' });
      absent.add(object);
    } else if (row.granted !== true) {
      missing.push({ object, privilege: row.priv });
    }
  }
  return missing;
}

/**
 * Rejects naming every privilege the role of this connection lacks to run `component` with
 * `features` in `schema` (`INVALID_CONFIG`, with how to grant them), or every table that is not there
 * (`NOT_MIGRATED`); resolves when nothing is missing. Called in a component's `start()`, it
 * makes a role without its grants fail there, once and clearly, instead of at each message.
 */
export async function assertGrants(db: Queryable, schema: string, component: MailroomComponent, features: GrantFeatures = {}): Promise<void> {
  const missing = await missingGrants(db, schema, component, features);
  if (missing.length === 0) return;
  const absent = missing.filter((m) => m.privilege === 'missing');
  if (absent.length > 0) {
    throw new MailroomError(
      'NOT_MIGRATED',
      `The ${component} needs ${absent.map((m) => m.object).join(', ')}, which ${absent.length === 1 ? 'does' : 'do'} not exist: run \`mailroom migrate\` (or migrate()) first.`,
      { details: { component, schema, missing } },
    );
  }
  const role = (await toExecutor(db).query<{ role: string }>('SELECT current_user AS role')).rows[0]?.role ?? '?';
  const text = missing.map((m) => `${m.privilege} on ${m.object}`).join(', ');
  const flags = GRANT_FEATURES.filter((f) => features[f] === true).map((f) => ` --${f}`).join('');
  const used = flags === '' ? '' : ` with${flags.replaceAll(' --', ' ')}`;
  throw new MailroomError(
    'INVALID_CONFIG',
    `Role "${role}" lacks ${text}, which the ${component}${used} needs (permission denied). Have the owner of mailroom's tables run the output of \`mailroom grants --${component} ${role}${flags}\` (grantsScript() from @mailroom/core).`,
    { details: { component, schema, role, missing } },
  );
}
