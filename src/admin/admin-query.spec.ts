import { AppError } from '../common/app-error';
import { decodeCursor, encodeCursor, paramDocuments, splitParamFilters } from './admin-query';

describe('admin query helpers', () => {
  it('round-trips a cursor and refuses anything it did not make', () => {
    const cursor = {
      at: '2026-12-02T13:55:10.123456Z',
      id: '6f1c0a52-3b0e-4e8a-9a37-2f7f8f0b9d11',
    };
    expect(decodeCursor(encodeCursor(cursor))).toEqual(cursor);
    for (const bad of ['', 'x', encodeCursor({ at: '2026-12-02', id: cursor.id }), 'W10']) {
      expect(() => decodeCursor(bad)).toThrow(AppError);
    }
  });

  it('matches a parameter as a string, and also as a number or boolean when it reads as one', () => {
    expect(paramDocuments('transactionId', 'TX-1')).toEqual(['{"transactionId":"TX-1"}']);
    expect(paramDocuments('amount', '5')).toEqual(['{"amount":"5"}', '{"amount":5}']);
    expect(paramDocuments('amount', '-1.5e3')).toEqual([
      '{"amount":"-1.5e3"}',
      '{"amount":-1.5e3}',
    ]);
    expect(paramDocuments('vip', 'true')).toEqual(['{"vip":"true"}', '{"vip":true}']);
    // Not JSON numbers, or not finite ones: strings only (never null, never a parse error).
    expect(paramDocuments('code', '007')).toEqual(['{"code":"007"}']);
    expect(paramDocuments('big', '1e999')).toEqual(['{"big":"1e999"}']);
    expect(paramDocuments('k"}', 'v')).toEqual(['{"k\\"}":"v"}']);
    for (const docs of [paramDocuments('amount', '5'), paramDocuments('big', '1e999')]) {
      docs.forEach((d) => expect(() => JSON.parse(d) as unknown).not.toThrow());
    }
  });

  it('splits param.<key> filters from the rest and refuses empty, repeated or too many', () => {
    expect(splitParamFilters({ 'param.a': '1', status: 'open' })).toEqual({
      params: [['a', '1']],
      rest: { status: 'open' },
    });
    expect(() => splitParamFilters({ 'param.': 'x' })).toThrow(AppError);
    expect(() => splitParamFilters({ 'param.a': ['1', '2'] })).toThrow(AppError);
    const many = Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`param.k${i}`, 'v']));
    expect(() => splitParamFilters(many)).toThrow(AppError);
  });
});
