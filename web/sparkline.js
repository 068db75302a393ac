// A sparkline on a <canvas>: the series as a line over a light fill, scaled
// from 0 to its maximum, drawn at the device's pixel ratio.

/**
 * @param {HTMLCanvasElement} canvas
 * @param {number[]} values oldest first
 * @param {{ capacity?: number, color?: string, format?: (n: number) => string }} options
 */
export function drawSparkline(canvas, values, options = {}) {
  const capacity = options.capacity ?? values.length;
  const color = options.color ?? '#1f6feb';
  const ratio = window.devicePixelRatio || 1;
  const width = Math.max(1, Math.round(canvas.clientWidth * ratio));
  const height = Math.max(1, Math.round(canvas.clientHeight * ratio));
  if (canvas.width !== width || canvas.height !== height) {
    canvas.width = width;
    canvas.height = height;
  }
  const ctx = canvas.getContext('2d');
  ctx.clearRect(0, 0, width, height);
  const pad = 3 * ratio;
  const top = 12 * ratio; // room for the max label
  ctx.strokeStyle = '#e3e6eb';
  ctx.lineWidth = ratio;
  ctx.beginPath();
  ctx.moveTo(0, height - pad + 0.5);
  ctx.lineTo(width, height - pad + 0.5);
  ctx.stroke();
  if (values.length === 0) return;
  const max = Math.max(...values, 0);
  const scale = max > 0 ? (height - top - pad) / max : 0;
  const step = capacity > 1 ? width / (capacity - 1) : width;
  const x0 = width - (values.length - 1) * step;
  const y = (v) => height - pad - Math.max(0, v) * scale;
  ctx.beginPath();
  values.forEach((v, i) => (i === 0 ? ctx.moveTo(x0, y(v)) : ctx.lineTo(x0 + i * step, y(v))));
  ctx.lineTo(x0 + (values.length - 1) * step, height - pad);
  ctx.lineTo(x0, height - pad);
  ctx.closePath();
  ctx.fillStyle = color + '22';
  ctx.fill();
  ctx.beginPath();
  values.forEach((v, i) => (i === 0 ? ctx.moveTo(x0, y(v)) : ctx.lineTo(x0 + i * step, y(v))));
  ctx.strokeStyle = color;
  ctx.lineWidth = 1.6 * ratio;
  ctx.lineJoin = 'round';
  ctx.stroke();
  const last = values[values.length - 1];
  ctx.fillStyle = color;
  ctx.beginPath();
  ctx.arc(x0 + (values.length - 1) * step - ratio, y(last), 2.5 * ratio, 0, Math.PI * 2);
  ctx.fill();
  const format = options.format ?? String;
  ctx.fillStyle = '#667085';
  ctx.font = `${10 * ratio}px system-ui, sans-serif`;
  ctx.textAlign = 'right';
  ctx.textBaseline = 'top';
  ctx.fillText(`max ${format(max)}`, width - ratio, 0);
}
