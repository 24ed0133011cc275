import { doctor, formatDoctorReport } from '../../python/doctor.js'
import { type Command, out } from '../flags.js'

export const doctorCommand: Command = {
  name: 'doctor',
  usage: 'ttt-video doctor [--venv DIR] [--json]',
  flags: { venv: { type: 'string' }, json: { type: 'boolean' } },
  async run(_positionals, values) {
    const report = await doctor(values.venv ? { venvDir: values.venv as string } : {})
    out(values.json ? JSON.stringify(report, null, 2) : formatDoctorReport(report))
    return report.findings.some((f) => f.level === 'problem') ? 1 : 0
  },
}
