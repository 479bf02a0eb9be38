// Wire-level views of Rocket.Chat's published types, for the fake server's conformance check
// (crates/testkit/tests/rocketchat_typings.rs). The published types describe server-side
// objects (`Date` fields); on the wire a REST body is `JSON.stringify`d (dates become ISO
// strings: core-typings' own `Serialized<T>`) and a DDP frame is EJSON (dates become
// `{"$date": <ms>}`: `EJSON<T>` below).
//
// Everything else here is a documented place where real servers send more (or other) than the
// typings declare; each one is listed in docs/fake-rocketchat.md. Nothing here loosens a field
// the typings do declare.

import type {
	IEditedMessage,
	IMessage,
	IMeApiUser,
	IRoom,
	ISetting,
	Serialized,
	UserStatus,
} from '@rocket.chat/core-typings';
import type { OperationResult } from '@rocket.chat/rest-typings';

/** How a value travels in a DDP frame: EJSON dates, everything else as JSON. */
export type EJSON<T> = T extends Date
	? { $date: number }
	: T extends [any, ...any]
		? { [K in keyof T]: EJSON<T[K]> }
		: T extends any[]
			? EJSON<T[number]>[]
			: T extends object
				? { [K in keyof T]: EJSON<T[K]> }
				: T;

/** `API.v1.success()` merges `success: true` into every success body. */
export type Success<T> = T & { success: true };

/**
 * Message fields real servers store and send that `IMessage` does not declare:
 * - `parseUrls`: `chat.postMessage` (processWebhookMessage) stores it on the document;
 * - `channels[].fname`: the mention lookup projects `{_id, name, fname, federated}`.
 */
type MessageDelta<M extends { channels?: unknown }> = Omit<M, 'channels'> & {
	parseUrls?: boolean;
	channels?: { _id: string; name?: string; fname?: string }[];
};

/** Any message, edited or not (`IEditedMessage` adds `editedAt`/`editedBy`). */
type AnyMessage = IMessage & Partial<Pick<IEditedMessage, 'editedAt' | 'editedBy'>>;

/** A message document in a REST body. */
export type RestMessage = MessageDelta<Serialized<AnyMessage>>;

/** A message document in a DDP `changed` frame. */
export type DdpMessage = MessageDelta<EJSON<AnyMessage>>;

/** A room document in a REST body (its `lastMessage` is a message like any other). */
export type RestRoom = Omit<Serialized<IRoom>, 'lastMessage'> & { lastMessage?: RestMessage };

/** A DM room: created by `createDirectMessage`, it has no owner `u` (the typings require one). */
export type RestDirectRoom = Omit<RestRoom, 'u'>;

/** `chat.postMessage`: `channel` is the string the caller sent, not an `IRoom` as typed. */
export type PostMessageBody = Success<
	Omit<Serialized<OperationResult<'POST', '/v1/chat.postMessage'>>, 'channel' | 'message'> & {
		channel: string;
		message: RestMessage;
	}
>;

/** `GET /api/info` without a privileged login; the server adds `minimumClientVersions`. */
export type InfoBody = Success<
	Extract<OperationResult<'GET', '/info'>, { version: string | undefined }> & {
		minimumClientVersions: { desktop: string; mobile: string };
	}
>;

/** `settings.public` projects each setting to `{_id, value, enterprise, invalidValue,
 * modules, requiredOnWizard}`, not the whole `ISetting` the typings promise. */
export type SettingsPublicBody = Success<
	Omit<Serialized<OperationResult<'GET', '/v1/settings.public'>>, 'settings'> & {
		settings: Pick<ISetting, '_id' | 'value' | 'enterprise' | 'requiredOnWizard'>[];
	}
>;

/** `channels.info`. */
export type ChannelsInfoBody = Success<{ channel: RestRoom }>;

/** `groups.info`. */
export type GroupsInfoBody = Success<{ group: RestRoom }>;

/** `im.create`: the DM room plus `rid`, as typed. */
export type ImCreateBody = Success<{ room: RestDirectRoom & { rid: string } }>;

/** `channels.history` / `groups.history` / `im.history` all answer `getChannelHistory`'s
 * `{messages}` (groups.history is typed as paginated; the server sends no count/offset/total). */
export type HistoryBody = Success<{ messages: RestMessage[] }>;

/** The element type `im.history` is typed with (checked by assignment, not as a literal). */
export type ImHistoryItem = Serialized<OperationResult<'GET', '/v1/im.history'>>['messages'][number];

/** `rooms.upload/:rid` (before 8.0; the 8.x typings no longer have it) and
 * `rooms.mediaConfirm/:rid/:fileId`. */
export type FileMessageBody = Success<{ message: RestMessage | null }>;

/** `rooms.media/:rid`: the server answers `{file: {_id, url}}` (typed: `{file: {url}}`). */
export type RoomsMediaBody = Success<
	Serialized<OperationResult<'POST', '/v1/rooms.media/:rid'>> & { file: { _id: string } }
>;

/** `UserStatus` is a TypeScript string enum; JSON carries its string values. */
type WireStatus<T> = Omit<T, 'status' | 'statusDefault'> & {
	status?: `${UserStatus}`;
	statusDefault?: `${UserStatus}`;
};

/** `GET /me`. */
export type MeBody = WireStatus<Serialized<OperationResult<'GET', '/v1/me'>>>;

/** `POST /login` is typed `Record<string, any>`; its `data.me` is `getUserInfo()`'s user. */
export type LoginBody = Success<{
	status: 'success';
	data: { userId: string; authToken: string; me: WireStatus<Serialized<IMeApiUser>> };
}>;

/** A `stream-room-messages` event frame. */
export type RoomMessagesFrame = {
	msg: 'changed';
	collection: 'stream-room-messages';
	id: 'id';
	fields: { eventName: string; args: [DdpMessage] };
};

/** Accepts a value of type `T` without object-literal excess-property checks. */
export function assignable<T>(_value: T): void {}
