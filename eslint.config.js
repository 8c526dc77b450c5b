import js from '@eslint/js'
import tseslint from 'typescript-eslint'

export default tseslint.config(
  { ignores: ['dist/**', 'node_modules/**', 'coverage/**', '.scratch/**', 'docs/api/**'] },
  js.configs.recommended,
  ...tseslint.configs.recommended,
  {
    rules: {
      '@typescript-eslint/no-unused-vars': ['error', { argsIgnorePattern: '^_', varsIgnorePattern: '^_' }],
      '@typescript-eslint/consistent-type-imports': 'error',
      'no-console': ['error', { allow: ['warn', 'error'] }],
    },
  },
  {
    // Audit events are built by the typed builders of src/audit/events.ts, so that one kind of
    // decision has one shape in the trail; a decision point never writes an event literal.
    files: ['src/**/*.ts', 'adapters/**/*.ts'],
    ignores: ['src/audit/**'],
    rules: {
      'no-restricted-syntax': [
        'error',
        {
          selector: "ObjectExpression:has(> Property[key.name='action']):has(> Property[key.name='decision'])",
          message: 'Build audit events with the builders of src/audit/events.ts (allowedEvent, refusedEvent, tokenIssued, ...).',
        },
      ],
    },
  },
  {
    files: ['examples/**', 'bench/**', 'src/cli/**', 'test/support/**'],
    rules: { 'no-console': 'off' },
  },
  {
    // CommonJS configuration files of tools that load them with require().
    files: ['**/*.cjs'],
    languageOptions: { sourceType: 'commonjs', globals: { module: 'writable', require: 'readonly' } },
  },
  {
    // Tests read JSON vectors and poke at wire shapes on purpose.
    files: ['test/**'],
    rules: { '@typescript-eslint/no-explicit-any': 'off' },
  },
)
