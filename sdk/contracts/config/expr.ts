import { formatNumber } from './messages.js'

// A tiny expression language for the cross-field rules, so that the rules exist once, as data, and both
// languages evaluate the same data: this file and python/ttt_video/contracts/expr.py (differential-tested
// in test/unit/config-differential.test.ts). An expression is a JSON literal (number, string, boolean,
// null) or an array [op, ...args]. Integers only: every rule works on counts and sizes.

export type Expr = number | string | boolean | null | readonly [string, ...Expr[]]
export type Value = number | string | boolean | null | readonly Value[]
export type Tables = Readonly<Record<string, Readonly<Record<string, unknown>>>>

/** What names an expression can read: config fields (`section.field`), variables, tables. */
export interface Scope {
  /** A config field by dotted path, a variable (`$x`, a rule's `let` names), or undefined. */
  lookup(name: string): Value | undefined
  tables: Tables
}

export class ExprError extends Error {}

type Fn = (args: readonly Expr[], scope: Scope) => Value

const int = (v: Value, op: string): number => {
  if (typeof v !== 'number' || !Number.isInteger(v))
    throw new ExprError(`${op}: expected an integer, got ${v}`)
  return v
}
const ints = (args: readonly Expr[], scope: Scope, op: string) => args.map((a) => int(evaluate(a, scope), op))
const floorDiv = (a: number, b: number) => {
  if (b === 0) throw new ExprError('division by zero')
  return Math.floor(a / b)
}

function bind(scope: Scope, vars: Record<string, Value>): Scope {
  return { tables: scope.tables, lookup: (name) => (name in vars ? vars[name] : scope.lookup(name)) }
}

function table(scope: Scope, name: Expr): Readonly<Record<string, unknown>> {
  const t = typeof name === 'string' ? scope.tables[name] : undefined
  if (t === undefined) throw new ExprError(`unknown table ${String(name)}`)
  return t
}

const OPS: Record<string, Fn> = {
  ref: ([name], scope) => {
    const value = scope.lookup(String(name))
    if (value === undefined) throw new ExprError(`unknown name ${String(name)}`)
    return value
  },
  add: (args, s) => ints(args, s, 'add').reduce((a, b) => a + b, 0),
  sub: (args, s) => {
    const [a, b] = ints(args, s, 'sub') as [number, number]
    return a - b
  },
  mul: (args, s) => ints(args, s, 'mul').reduce((a, b) => a * b, 1),
  floordiv: (args, s) => floorDiv(...(ints(args, s, 'floordiv') as [number, number])),
  mod: (args, s) => {
    const [a, b] = ints(args, s, 'mod') as [number, number]
    return a - b * floorDiv(a, b)
  },
  // round(a / b) with halves rounded up (b > 0)
  divround: (args, s) => {
    const [a, b] = ints(args, s, 'divround') as [number, number]
    return floorDiv(2 * a + b, 2 * b)
  },
  max: (args, s) => Math.max(...ints(args, s, 'max')),
  min: (args, s) => Math.min(...ints(args, s, 'min')),
  eq: ([a, b], s) => evaluate(a!, s) === evaluate(b!, s),
  ne: ([a, b], s) => evaluate(a!, s) !== evaluate(b!, s),
  lt: (args, s) => compare(args, s, (a, b) => a < b),
  le: (args, s) => compare(args, s, (a, b) => a <= b),
  gt: (args, s) => compare(args, s, (a, b) => a > b),
  ge: (args, s) => compare(args, s, (a, b) => a >= b),
  and: (args, s) => args.every((a) => truthy(evaluate(a, s))),
  or: (args, s) => args.some((a) => truthy(evaluate(a, s))),
  not: ([a], s) => !truthy(evaluate(a!, s)),
  if: ([c, a, b], s) => (truthy(evaluate(c!, s)) ? evaluate(a!, s) : evaluate(b!, s)),
  defined: ([a], s) => evaluate(a!, s) !== null,
  lookup: ([name, key, field], s) => {
    let value = table(s, name!)[String(evaluate(key!, s))] as unknown
    if (value !== undefined && field !== undefined) value = (value as Record<string, unknown>)[String(field)]
    if (value === undefined) throw new ExprError(`${String(name)} has no entry ${String(evaluate(key!, s))}`)
    return value as Value
  },
  // The first key of a table (in its order) whose entry satisfies cond ($key, $value bound); else null.
  first_key: ([name, cond], s) => {
    for (const [key, value] of Object.entries(table(s, name!))) {
      if (truthy(evaluate(cond!, bind(s, { $key: key, $value: value as Value })))) return key
    }
    return null
  },
  // The integer x >= 1 nearest to start (within span; the smaller one on a tie) with cond ($x bound).
  nearest: ([start, span, cond], s) => {
    const [from, width] = ints([start!, span!], s, 'nearest') as [number, number]
    for (let d = 0; d <= width; d++) {
      for (const x of d === 0 ? [from] : [from - d, from + d]) {
        if (x >= 1 && truthy(evaluate(cond!, bind(s, { $x: x })))) return x
      }
    }
    return null
  },
  divisors: ([n], s) => {
    const k = int(evaluate(n!, s), 'divisors')
    return Array.from({ length: k }, (_, i) => i + 1).filter((d) => k % d === 0)
  },
  format: ([template], s) => formatTemplate(String(template), s),
}

function compare(args: readonly Expr[], s: Scope, test: (a: number, b: number) => boolean): boolean {
  const [a, b] = ints(args, s, 'compare') as [number, number]
  return test(a, b)
}

function truthy(v: Value): boolean {
  if (typeof v !== 'boolean') throw new ExprError(`expected true or false, got ${String(v)}`)
  return v
}

/** `{name}` placeholders replaced by the formatted values of names (fields, variables). */
export function formatTemplate(template: string, scope: Scope): string {
  return template.replace(/\{([\w.$@]+)\}/g, (_, name: string) => {
    const value = OPS.ref!([name], scope)
    return Array.isArray(value) ? value.map(templateText).join(', ') : templateText(value)
  })
}

function templateText(value: Value): string {
  if (typeof value === 'number') return formatNumber(value)
  return String(value)
}

export function evaluate(expr: Expr, scope: Scope): Value {
  if (!Array.isArray(expr)) return expr as Value
  const [op, ...args] = expr as readonly [string, ...Expr[]]
  const fn = OPS[op]
  if (fn === undefined) throw new ExprError(`unknown operation ${op}`)
  return fn(args, scope)
}

// ---------------------------------------------------------------------------------------------------
// Builders, so that rules read as formulas

export const ref = (name: string): Expr => ['ref', name]
export const op =
  (name: string) =>
  (...args: Expr[]): Expr => [name, ...args]
export const add = op('add')
export const sub = op('sub')
export const mul = op('mul')
export const floordiv = op('floordiv')
export const mod = op('mod')
export const eq = op('eq')
export const ne = op('ne')
export const lt = op('lt')
export const le = op('le')
export const gt = op('gt')
export const ge = op('ge')
export const and = op('and')
export const or = op('or')
export const not = op('not')
export const iff = op('if')
export const defined = op('defined')
export const format = (template: string): Expr => ['format', template]
