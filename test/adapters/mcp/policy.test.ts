/** The pure MCP decisions: method scopes, tool visibility, definition pins. */
import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { compileScopeTemplate, grantsCover, resolveTool } from 'agent-trust'
import { mayCall, methodOperation, methodScope, toolDefinitionHash, UNGUARDED_METHODS } from 'agent-trust/mcp'

describe('method requirements', () => {
  it('scopes every guarded method as mcp:<server>:<method>, and refuses names that cannot form a scope', () => {
    expect(methodScope('agent-database-reader', 'tools/list')).toBe('mcp:agent-database-reader:tools/list')
    expect(methodScope('srv', 'resources/templates/list')).toBe('mcp:srv:resources/templates/list')
    expect(methodScope('srv', 'weird method')).toBeUndefined()
    expect(methodScope('srv', '')).toBeUndefined()
  })

  it('2026-07-28: server/discover needs the tools/list scope; subscriptions/listen its own; both reads', () => {
    expect(methodScope('agent-database-reader', 'server/discover')).toBe('mcp:agent-database-reader:tools/list')
    expect(methodOperation('server/discover')).toBe('read')
    expect(methodScope('srv', 'subscriptions/listen')).toBe('mcp:srv:subscriptions/listen')
    expect(methodOperation('subscriptions/listen')).toBe('read')
  })

  it('reads are read, state changes write, anything unknown execute', () => {
    expect(methodOperation('tools/list')).toBe('read')
    expect(methodOperation('resources/read')).toBe('read')
    expect(methodOperation('logging/setLevel')).toBe('write')
    expect(methodOperation('x-vendor/doSomething')).toBe('execute')
    expect([...UNGUARDED_METHODS].sort()).toEqual(['initialize', 'ping'])
  })
})

describe('mayCall (tools/list filtering)', () => {
  const tool = (template: string, operation: 'read' | 'write' | 'execute' = 'read') =>
    resolveTool('srv', 'x', { name: 'x', operation, scope: template })

  it('a placeholder matches a literal grant segment, a * grant matches anything', () => {
    const t = tool('db:read:documents:namespace:{namespace}')
    expect(mayCall(['db:read:documents:namespace:user-123'], 'L2', t)).toBe(true)
    expect(mayCall(['db:read:*:namespace:*'], 'L2', t)).toBe(true)
    expect(mayCall(['db:read:documents:namespace'], 'L2', t)).toBe(false)
    expect(mayCall(['db:write:documents:namespace:*'], 'L2', t)).toBe(false)
    expect(mayCall(['db:read:documents:namespace:*'], 'L0', t)).toBe(false)
    expect(mayCall(['tool:srv:x'], 'L1', tool('tool:srv:x', 'execute'))).toBe(false)
  })

  const segment = fc.constantFrom('a', 'b', 'db', 'read', 'user-1')
  it('never hides a tool the caller could call: any covered filled scope implies mayCall (property)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(segment, fc.constant('{p0}'), fc.constant('{p1}')), { minLength: 1, maxLength: 5 }),
        fc.array(fc.array(fc.oneof(segment, fc.constant('*')), { minLength: 1, maxLength: 5 }), { maxLength: 4 }),
        segment,
        segment,
        (templateSegments, grantSegments, p0, p1) => {
          const template = templateSegments.join(':')
          const t = resolveTool('srv', 'x', { name: 'x', operation: 'read', scope: template })
          const grants = grantSegments.map((g) => g.join(':'))
          const filled = compileScopeTemplate(template).fill({ p0, p1 })
          if (grantsCover(grants, filled)) expect(mayCall(grants, 'L2', t)).toBe(true)
        },
      ),
      { numRuns: 500 },
    )
  })
})

describe('toolDefinitionHash', () => {
  const base = {
    name: 'echo',
    description: 'Echo a message',
    inputSchema: { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
  }

  it('is a base64url SHA-256 that ignores key order', () => {
    const h = toolDefinitionHash(base)
    expect(h).toMatch(/^[A-Za-z0-9_-]{43}$/)
    expect(
      toolDefinitionHash({
        inputSchema: { required: ['message'], properties: { message: { type: 'string' } }, type: 'object' },
        description: 'Echo a message',
        name: 'echo',
      }),
    ).toBe(h)
  })

  it('changes with any change of name, description or schema (property)', () => {
    const h = toolDefinitionHash(base)
    fc.assert(
      fc.property(fc.string({ minLength: 1 }), (s) => {
        fc.pre(s !== base.description && s !== base.name)
        expect(toolDefinitionHash({ ...base, description: s })).not.toBe(h)
        expect(toolDefinitionHash({ ...base, name: s })).not.toBe(h)
        expect(
          toolDefinitionHash({
            ...base,
            inputSchema: { ...base.inputSchema, properties: { message: { type: 'string', description: s } } },
          }),
        ).not.toBe(h)
      }),
    )
    expect(toolDefinitionHash({ name: 'echo', inputSchema: base.inputSchema })).not.toBe(h)
  })
})

describe('the default scope of a tool (tool:<server>:<name>)', () => {
  it('takes the name as one literal segment: a name that would add segments or placeholders is refused', () => {
    expect(resolveTool('srv', 'read_file.v2', undefined).scope.fill({})).toBe('tool:srv:read_file.v2')
    for (const name of ['{path}', 'a:b', 'write_file:*', '*', '', 'x y', 'a\u202eb', 'x'.repeat(65)])
      expect(() => resolveTool('srv', name, undefined), JSON.stringify(name)).toThrow(
        expect.objectContaining({ code: 'ERR_SCOPE_INVALID', details: { rule: 'tool-name' } }),
      )
    // A declared scope is the manifest's own choice: the name is then only a name.
    expect(resolveTool('srv', 'a:b', { name: 'a:b', operation: 'read', scope: 'tool:srv:ab' }).scope.fill({})).toBe('tool:srv:ab')
  })

  it("a call whose tool is named {path} can never pick another tool's scope through its arguments (property)", () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.string({ maxLength: 80 }),
          fc
            .tuple(fc.string({ maxLength: 8 }), fc.constantFrom('{path}', '{namespace}', ':{path}', ':*'), fc.string({ maxLength: 8 }))
            .map((p) => p.join('')),
        ),
        (name) => {
          let scope: string
          try {
            scope = resolveTool('srv', name, undefined).scope.fill({ path: 'write_file', namespace: 'x' })
          } catch {
            return
          }
          expect(scope).toBe(`tool:srv:${name}`)
        },
      ),
    )
  })
})
