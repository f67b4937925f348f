import { Column, Entity, Index, PrimaryColumn } from 'typeorm';

/** Something that happened to a node rather than to a session (its database going away, back). */
@Entity('node_events')
@Index('ix_node_events_node_at', ['node', 'at'])
export class NodeEventEntity {
  @PrimaryColumn('uuid')
  id!: string;

  @Column('timestamptz')
  at!: Date;

  @Column('text')
  node!: string;

  @Column('text')
  type!: string;

  @Column('jsonb', { default: () => `'{}'` })
  detail!: Record<string, unknown>;
}
